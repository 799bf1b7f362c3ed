using System.Diagnostics;
using System.Globalization;

namespace Simfail;

/// <summary>
/// simfail: makes the kernel fail in known ways, one case per name, and prints one line per case:
///   CASE: -ENAME (N)
/// Exit 0 when every case got its expected errno (or, for a case that depends on the kernel,
/// succeeded), 1 otherwise (a message on stderr says what came
/// instead), 2 for bad usage. With --loop it runs each case for that long and prints
///   CASE: CALLS calls, FAILURES failed with -ENAME (N), THREADS threads, SECONDS s
/// Output goes through write(2), not System.Console: no terminal probing, fast start.
/// </summary>
public static class Program
{
    const string Usage =
        "usage: simfail [--list] [-a|--all] [--loop SECONDS [--threads N]] [--wait-file FILE] CASE...\n" +
        "Makes the kernel fail in known ways; prints 'CASE: -ENAME (N)' for each case.\n" +
        "  --list              print the case names, one a line\n" +
        "  -a, --all           run every case that fails the same way on every kernel\n" +
        "                      (the kernel-dependent ones, marked *, run only by name)\n" +
        "  --loop SECONDS      call each given case repeatedly for SECONDS, then print\n" +
        "                      'CASE: C calls, F failed with -ENAME (N), T threads, S s'\n" +
        "  --threads N         with --loop: from N threads (default 1)\n" +
        "  --wait-file FILE    before the first case, wait until FILE exists and is not empty\n" +
        "                      (start simfail, learn its pid, then release it: echo go > FILE)\n" +
        "Exit 0: every case failed as expected (a * case: or succeeded); 1: one did not\n" +
        "(see stderr); 2: bad usage.\n" +
        "Cases:\n";

    static void Out(string s) => Native.WriteAll(1, s);
    static void Err(string s) => Native.WriteAll(2, "simfail: " + s + "\n");

    public static int Main(string[] args)
    {
        var names = new List<string>();
        double seconds = 0;
        int threads = 1;
        bool loop = false, threadsGiven = false;
        string? waitFile = null;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            switch (a)
            {
                case "-h" or "--help":
                    var sb = new System.Text.StringBuilder(Usage);
                    foreach (var c in Cases.All)
                        sb.Append(CultureInfo.InvariantCulture, $"  {c.Name + (c.MaySucceed ? " *" : ""),-36} {Errno.Format(c.Expected),-20} {c.Where}\n");
                    Out(sb.ToString());
                    return 0;
                case "--list":
                    var l = new System.Text.StringBuilder();
                    foreach (var c in Cases.All)
                        l.Append(c.Name).Append('\n');
                    Out(l.ToString());
                    return 0;
                case "-a" or "--all":
                    foreach (var c in Cases.All)
                    {
                        if (!c.MaySucceed)
                            names.Add(c.Name);
                    }
                    break;
                case "--loop":
                    if (i + 1 >= args.Length || !double.TryParse(args[++i], NumberStyles.Float, CultureInfo.InvariantCulture, out seconds)
                        || !(seconds > 0) || double.IsInfinity(seconds))
                    {
                        Err("--loop needs a number of seconds > 0");
                        return 2;
                    }
                    loop = true;
                    break;
                case "--threads":
                    if (i + 1 >= args.Length || !int.TryParse(args[++i], NumberStyles.None, CultureInfo.InvariantCulture, out threads)
                        || threads < 1 || threads > 1024)
                    {
                        Err("--threads needs a count from 1 to 1024");
                        return 2;
                    }
                    threadsGiven = true;
                    break;
                case "--wait-file":
                    if (i + 1 >= args.Length || args[i + 1].Length == 0)
                    {
                        Err("--wait-file needs a file name");
                        return 2;
                    }
                    waitFile = args[++i];
                    break;
                default:
                    if (a.StartsWith('-'))
                    {
                        Err($"unknown option '{a}' (see --help)");
                        return 2;
                    }
                    names.Add(a);
                    break;
            }
        }
        if (threadsGiven && !loop)
        {
            Err("--threads goes with --loop");
            return 2;
        }
        if (names.Count == 0)
        {
            Err("name a case (--list shows them) or give -a");
            return 2;
        }
        // every name is checked before anything runs
        var cases = new List<FailCase>(names.Count);
        foreach (var n in names)
        {
            var c = Cases.Find(n);
            if (c is null)
            {
                Err($"unknown case '{n}' (--list shows them)");
                return 2;
            }
            cases.Add(c);
        }
        if (!Native.ArchSupported)
        {
            Err($"no system call numbers for {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}");
            return 1;
        }

        if (waitFile is not null)
            WaitUntilNotEmpty(waitFile);

        int rc = 0;
        try
        {
            foreach (var c in cases)
            {
                try
                {
                    c.Setup?.Invoke();
                }
                catch (Exception e)
                {
                    Out($"{c.Name}: setup failed\n");
                    Err($"{c.Name}: {e.Message}");
                    rc = 1;
                    continue;
                }
                rc |= loop ? Loop(c, seconds, threads) : Once(c);
            }
        }
        finally
        {
            Cases.Cleanup();
        }
        return rc;
    }

    /// <summary>Polls (every 10 ms) until the file has content. A size check, not an existence
    /// check, so the caller can create it empty first and the polling makes no failing calls.</summary>
    static void WaitUntilNotEmpty(string path)
    {
        var f = new FileInfo(path);
        while (true)
        {
            f.Refresh();
            if (f.Exists && f.Length > 0)
                return;
            Thread.Sleep(10);
        }
    }

    static int Once(FailCase c)
    {
        int err = c.Run();
        Out($"{c.Name}: {Errno.Format(err)}\n");
        if (err == c.Expected || (err == 0 && c.MaySucceed))
            return 0;
        Err(err == 0
            ? $"{c.Name}: expected {Errno.Format(c.Expected)} but the call succeeded"
            : $"{c.Name}: expected {Errno.Format(c.Expected)} but got {Errno.Format(err)}{Hint(err)}");
        return 1;
    }

    static string Hint(int err) => err == 1 /* EPERM */ ? " (not privileged enough: needs root / CAP_BPF, CAP_SYS_ADMIN)" : "";

    /// <summary>Result of <see cref="RunLoop"/>: calls made, how many failed as expected, how many
    /// succeeded where the case may succeed, and the first other outcome seen (-1 when none).</summary>
    public readonly record struct LoopResult(long Calls, long Failures, int FirstOther, long Successes = 0);

    /// <summary>Calls the case from <paramref name="threads"/> threads until the time is up. The
    /// threads start together; each counts on its own and adds up at the end.</summary>
    public static LoopResult RunLoop(FailCase c, double seconds, int threads)
    {
        long calls = 0, failures = 0, successes = 0;
        int firstOther = -1;
        long deadline = 0;
        using var ready = new CountdownEvent(threads);
        using var go = new ManualResetEventSlim(false);
        var ts = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            ts[t] = new Thread(() =>
            {
                long n = 0, f = 0, ok = 0;
                int other = -1;
                ready.Signal();
                go.Wait();
                long until = Volatile.Read(ref deadline);
                while (Stopwatch.GetTimestamp() < until)
                {
                    int err = c.Run();
                    n++;
                    if (err == c.Expected)
                        f++;
                    else if (err == 0 && c.MaySucceed)
                        ok++;
                    else if (other < 0)
                        other = err;
                }
                Interlocked.Add(ref calls, n);
                Interlocked.Add(ref failures, f);
                Interlocked.Add(ref successes, ok);
                if (other >= 0)
                    Interlocked.CompareExchange(ref firstOther, other, -1);
            }) { IsBackground = true, Name = "simfail-loop" };
            ts[t].Start();
        }
        ready.Wait();
        Volatile.Write(ref deadline, Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency));
        go.Set();
        foreach (var t in ts)
            t.Join();
        return new(calls, failures, firstOther, successes);
    }

    static int Loop(FailCase c, double seconds, int threads)
    {
        var r = RunLoop(c, seconds, threads);
        Out(string.Create(CultureInfo.InvariantCulture,
            $"{c.Name}: {r.Calls} calls, {r.Failures} failed with {Errno.Format(c.Expected)}{(c.MaySucceed ? $", {r.Successes} succeeded" : "")}, {threads} threads, {seconds} s\n"));
        if (r.Calls == r.Failures + r.Successes && r.Calls > 0)
            return 0;
        Err(r.Calls == 0
            ? $"{c.Name}: no call made in {seconds} s"
            : $"{c.Name}: {r.Calls - r.Failures - r.Successes} of {r.Calls} calls did not fail with {Errno.Format(c.Expected)} (first: {Errno.Format(r.FirstOther)}){Hint(r.FirstOther)}");
        return 1;
    }
}
