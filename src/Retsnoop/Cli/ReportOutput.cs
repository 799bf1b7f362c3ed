using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;

namespace Retsnoop.Cli;

/// <summary>
/// Where a run's output goes: reports (stacks, traces, the JSON summary) to the data stream
/// (--output FILE or stdout), status lines and the closing table to the terminal (stderr when JSON
/// takes stdout, so stdout stays pure JSON).
/// </summary>
sealed class ReportOutput : IDisposable
{
    readonly TextWriter data;
    readonly bool ownsData;
    readonly TextWriter status;
    readonly TextRenderer text;
    readonly IReportRenderer renderer;
    readonly bool json;

    ReportOutput(TextWriter data, bool ownsData, Options opts, ArgsFormatter? args)
    {
        this.data = data;
        this.ownsData = ownsData;
        status = opts.StatusOnStderr ? Console.Error : Console.Out;
        var clock = new Clock();
        text = new TextRenderer(opts.Output, clock, args);
        json = opts.Json;
        renderer = json ? new JsonRenderer(clock, args) : text;
    }

    /// <summary>The data stream: --output FILE (created or truncated) or stdout.</summary>
    public static ReportOutput Open(Options opts, ArgsFormatter? args)
    {
        if (opts.OutputPath is null)
            return new ReportOutput(Console.Out, false, opts, args);
        try
        {
            var stream = new FileStream(opts.OutputPath, FileMode.Create, FileAccess.Write, FileShare.Read);
            return new ReportOutput(new StreamWriter(stream, new System.Text.UTF8Encoding(false)), true, opts, args);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TracingException($"cannot write --output '{opts.OutputPath}' ({e.Message.TrimEnd('.')}); give a writable file path");
        }
    }

    /// <summary>One reported session, written and flushed at once.</summary>
    public void Write(SessionReport report)
    {
        data.Write(renderer.Session(report));
        data.Flush();
    }

    public void Status(string s)
    {
        status.Write(s);
        status.Flush();
    }

    /// <summary>The closing table follows the detach line; JSON also gets a summary object.</summary>
    public void Summary(RunSummary summary)
    {
        if (summary.Tally.Stacks > 0 || summary.Filtered > 0)
            Status('\n' + text.Summary(summary));
        if (json)
        {
            data.Write(renderer.Summary(summary));
            data.Flush();
        }
    }

    public void Dispose()
    {
        if (ownsData)
            data.Dispose();
    }
}
