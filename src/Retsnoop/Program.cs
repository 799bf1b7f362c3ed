namespace Retsnoop;

public static class Program
{
    public static int Main(string[] args)
    {
        // A background job starts with SIGINT ignored, and the runtime installs no handler for a
        // signal that was ignored when it first set up signal handling (the first Console use),
        // so Ctrl-C/kill -INT would later kill us without detaching. Restore the defaults before
        // anything touches Console; the run registers the handlers.
        Interop.Libc.UnignoreSignal(2 /* SIGINT */);
        Interop.Libc.UnignoreSignal(1 /* SIGHUP */);
        return Cli.RetsnoopCommand.Run(args);
    }
}
