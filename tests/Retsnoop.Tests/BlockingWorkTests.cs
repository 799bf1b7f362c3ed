using Retsnoop.Attach;
using Xunit;

namespace Retsnoop.Tests;

/// <summary>BlockingWork runs links' blocking calls: every item once, as many at once as asked
/// (not as many as the thread pool happens to have), a failure rethrown as itself.</summary>
public class BlockingWorkTests
{
    [Fact]
    public void EveryItemRunsOnce()
    {
        var items = Enumerable.Range(0, 1000).ToArray();
        var seen = new int[items.Length];
        BlockingWork.ForEach(items, 8, i => Interlocked.Increment(ref seen[i]));
        Assert.All(seen, n => Assert.Equal(1, n));
    }

    [Fact]
    public void RunsAsManyAtOnceAsAsked()
    {
        // each item waits until all 8 are inside: only 8 threads at once get through
        using var allInside = new CountdownEvent(8);
        int timedOut = 0;
        BlockingWork.ForEach(Enumerable.Range(0, 8).ToArray(), 8, _ =>
        {
            allInside.Signal();
            if (!allInside.Wait(TimeSpan.FromSeconds(10)))
                Interlocked.Increment(ref timedOut);
        });
        Assert.Equal(0, timedOut);
    }

    [Fact]
    public void NoMoreThreadsThanAsked()
    {
        int inside = 0, most = 0;
        BlockingWork.ForEach(Enumerable.Range(0, 64).ToArray(), 3, _ =>
        {
            int now = Interlocked.Increment(ref inside);
            int seen;
            while (now > (seen = Volatile.Read(ref most)) && Interlocked.CompareExchange(ref most, now, seen) != seen) { }
            Thread.Sleep(2);
            Interlocked.Decrement(ref inside);
        });
        Assert.InRange(most, 1, 3);
    }

    [Fact]
    public void FailureIsRethrownAsItself()
    {
        var e = Assert.Throws<InvalidOperationException>(() =>
            BlockingWork.ForEach(Enumerable.Range(0, 100).ToArray(), 4, i =>
            {
                if (i == 17)
                    throw new InvalidOperationException("item 17");
            }));
        Assert.Equal("item 17", e.Message);
    }
}
