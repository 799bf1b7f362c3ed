using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>Renders reports as one output format; each call returns whole lines.</summary>
public interface IReportRenderer
{
    string Session(SessionReport report);
    string Summary(RunSummary summary);
}
