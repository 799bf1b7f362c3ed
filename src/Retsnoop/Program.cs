namespace Retsnoop;

public static class Program
{
    /// <summary>What the start may allocate without a collection (small and large objects).</summary>
    const long StartAllocationBudget = 64L << 20;

    /// <summary>Ends the start's no-collection region, if the start stayed within its budget.</summary>
    public static void StartDone()
    {
        if (System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion)
            GC.EndNoGCRegion();
    }

    public static int Main(string[] args)
    {
        // A background job starts with SIGINT ignored, and the runtime installs no handler for a
        // signal that was ignored when it first set up signal handling (the first Console use),
        // so Ctrl-C/kill -INT would later kill us without detaching. Restore the defaults before
        // anything touches Console; the run registers the handlers.
        Interop.Libc.UnignoreSignal(2 /* SIGINT */);
        Interop.Libc.UnignoreSignal(1 /* SIGHUP */);
        // The start allocates ~12 MB, most of it large arrays (the traceable list, BTF): each
        // 3 MB of those set off a full collection, two before "Receiving data..." at ~30 ms each
        // in the TCG guest. None is needed before then (TraceRun ends the region when ready).
        GC.TryStartNoGCRegion(StartAllocationBudget);
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
