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
        int status = Cli.RetsnoopCommand.Run(args);
        // Everything is written and closed by now (outputs are flushed and disposed inside Run; a
        // copy being written was waited for). The runtime's shutdown and libc's exit handlers
        // have nothing left to do: after Ctrl-C they were ~6 ms of the exit in the TCG guest.
        Console.Out.Flush();
        Console.Error.Flush();
        Interop.Libc.Exit(status);
        return status;
    }
}
