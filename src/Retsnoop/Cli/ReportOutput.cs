using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;

namespace Retsnoop.Cli;

/// <summary>
/// Where a run's output goes: reports (stacks, traces, the JSON summary) to the data stream
/// (--output FILE or stdout), status lines and the closing table to the terminal (stderr when JSON
/// takes stdout, so stdout stays pure JSON); --trace-events and --folded files beside them.
/// </summary>
sealed class ReportOutput : IDisposable
{
    readonly TextWriter data;
    readonly bool ownsData;
    readonly TextWriter status;
    readonly TextRenderer text;
    readonly IReportRenderer renderer;
    readonly bool json;
    readonly Clock clock = new();
    TraceEventsWriter? traceEvents;
    FoldedStacks? folded;
    FileStream? foldedFile;

    ReportOutput(TextWriter data, bool ownsData, Options opts, ArgsFormatter? args)
    {
        this.data = data;
        this.ownsData = ownsData;
        status = opts.StatusOnStderr ? Console.Error : Console.Out;
        text = new TextRenderer(opts.Output, clock, args);
        json = opts.Json;
        renderer = json ? new JsonRenderer(clock, args) : text;
    }

    /// <summary>The data stream: --output FILE (created or truncated) or stdout; the picture files are created now too.</summary>
    public static ReportOutput Open(Options opts, ArgsFormatter? args)
    {
        var output = opts.OutputPath is null ? new ReportOutput(Console.Out, false, opts, args)
            : new ReportOutput(new StreamWriter(Create(opts.OutputPath, "output"), new System.Text.UTF8Encoding(false)), true, opts, args);
        try
        {
            if (opts.TraceEventsPath is { } events)
                output.traceEvents = new TraceEventsWriter(Create(events, "trace-events"), output.clock, args);
            if (opts.FoldedPath is { } foldedPath)
            {
                output.foldedFile = Create(foldedPath, "folded"); // written at exit
                output.folded = new FoldedStacks();
            }
        }
        catch
        {
            output.Dispose();
            throw;
        }
        return output;
    }

    static FileStream Create(string path, string option)
    {
        try
        {
            return new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TracingException($"cannot write --{option} '{path}' ({e.Message.TrimEnd('.')}); give a writable file path");
        }
    }

    /// <summary>One reported session, written and flushed at once.</summary>
    public void Write(SessionReport report)
    {
        data.Write(renderer.Session(report));
        data.Flush();
        traceEvents?.Add(report);
        folded?.Add(report);
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

    /// <summary>Also on Ctrl-C and on errors: the trace-events file gets its closing brackets, the folded file its lines.</summary>
    public void Dispose()
    {
        if (ownsData)
            data.Dispose();
        traceEvents?.Dispose();
        if (foldedFile is not null)
        {
            using (foldedFile)
                foldedFile.Write(new System.Text.UTF8Encoding(false).GetBytes(folded!.Render()));
            foldedFile = null;
        }
    }
}
