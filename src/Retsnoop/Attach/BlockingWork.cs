using System.Runtime.ExceptionServices;

namespace Retsnoop.Attach;

/// <summary>
/// Runs blocking kernel calls (making and closing links, each waiting for RCU or text poking) for
/// many items on threads of its own. Not the thread pool: it starts with one thread per CPU and
/// adds more only slowly, so on a 2-CPU machine links that mostly wait were closed about three at
/// a time. In the 7.2 guest, bench medians: -K's exit 590 -> 498 ms at 10 functions, 5,142 ->
/// 4,295 ms at 100.
/// </summary>
static class BlockingWork
{
    /// <summary>Calls <paramref name="body"/> once per item from up to <paramref name="threads"/>
    /// threads (the caller's among them); the first exception is rethrown once all have stopped.</summary>
    public static void ForEach<T>(IReadOnlyList<T> items, int threads, Action<T> body)
    {
        int next = -1;
        ExceptionDispatchInfo? failure = null;
        void Work()
        {
            int i;
            while (Volatile.Read(ref failure) is null && (i = Interlocked.Increment(ref next)) < items.Count)
            {
                try
                {
                    body(items[i]);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, ExceptionDispatchInfo.Capture(e), null);
                }
            }
        }
        // small stacks: the work is a few syscalls deep
        var helpers = new Thread[Math.Max(0, Math.Min(threads, items.Count) - 1)];
        for (int t = 0; t < helpers.Length; t++)
        {
            helpers[t] = new Thread(Work, 256 * 1024) { IsBackground = true, Name = "retsnoop-attach" };
            helpers[t].Start();
        }
        Work();
        foreach (var t in helpers)
            t.Join();
        failure?.Throw();
    }
}
