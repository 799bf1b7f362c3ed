using Retsnoop.Attach;
using Retsnoop.Interop;
using Retsnoop.Kernel;
using Retsnoop.Model;

namespace Retsnoop.Cli;

/// <summary>
/// The command: parse the command line once, answer --help/--version, or trace (TraceRun). Every
/// failure the user can act on ends here as one "retsnoop: ..." line and a non-zero exit code.
/// </summary>
public static class RetsnoopCommand
{
    public const string Version = "retsnoop v0.1.0 (C#)";

    public static int Run(string[] args)
    {
        Options opts;
        try
        {
            opts = OptionParser.Parse(args);
        }
        catch (UsageException e)
        {
            return Fail(e.Message, 2);
        }
        if (opts.ShowHelp)
        {
            Console.Out.Write(OptionParser.Help());
            return 0;
        }
        if (opts.ShowConfigHelp)
        {
            Console.Out.Write(ConfigKeys.Help());
            return 0;
        }
        if (opts.ShowUsage)
        {
            Console.Out.Write(OptionParser.Usage());
            return 0;
        }
        // -vvv: libbpf's own debug messages
        Libbpf.Verbose = opts.Verbosity >= 3;
        if (opts.ShowVersion)
            return PrintVersion(opts);
        try
        {
            return new TraceRun(opts).Run();
        }
        catch (UsageException e)
        {
            return Fail(e.Message, 2);
        }
        catch (Symbols.SymbolFileFormatException e)
        {
            // a corrupt or unsupported vmlinux/kallsyms: one line naming the file and offset
            if (opts.Verbosity >= 2)
                Console.Error.WriteLine(e);
            return Fail($"{e.Message}; give another vmlinux with -k PATH, or run without line info (-sn)", 1);
        }
        catch (Exception e) when (e is TracingException or InteropException or IOException or UnauthorizedAccessException or Btf.BtfFormatException)
        {
            if (opts.Verbosity >= 2)
                Console.Error.WriteLine(e);
            return Fail(e switch
            {
                BpfException b => b.SummaryWithVerifierReason,
                InteropException ie => ie.Summary,
                _ => e.Message,
            }, 1);
        }
        catch (Exception e)
        {
            // a bug of ours: still one line for the user, the trace with -vv
            if (opts.Verbosity >= 2)
                Console.Error.WriteLine(e);
            return Fail($"internal error: {e.GetType().Name}: {e.Message} (run with -vv for details)", 70);
        }
    }

    static int Fail(string message, int code)
    {
        Console.Error.WriteLine($"retsnoop: {message}");
        return code;
    }

    static int PrintVersion(Options opts)
    {
        Console.Out.WriteLine(Version);
        if (opts.Verbosity == 0)
            return 0;
        try
        {
            ArchAbi.EnsureSupported();
        }
        catch (UnsupportedArchitectureException e)
        {
            return Fail(e.Summary, 1);
        }
        if (Privileges.Missing() is { } missing)
            return Fail($"the feature report {Messages.MissingPrivileges(missing)}", 1);
        Console.Out.WriteLine("Feature detection:");
        var report = FeatureProbes.Detect();
        foreach (var f in report.Features)
            Console.Out.WriteLine($"\t{f.Name}: {(f.Supported ? "yes" : "no")}{(f.Supported || f.Detail.Length == 0 ? "" : $" ({f.Detail})")}");
        Console.Out.WriteLine($"\tdefault attach mode on this kernel: {Messages.DefaultMechanism(report.Default)}");
        Console.Out.WriteLine($"\tarchitecture: {Messages.ArchitectureSupport(System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture)}");
        return 0;
    }
}
