using System.Diagnostics;
using Retsnoop.Cli;
using Xunit;

namespace Retsnoop.Tests;

/// <summary>-v's "ready N ms after launch" counts from the process's start (/proc/PID/stat).</summary>
public class LaunchClockTests
{
    [Fact]
    public void AgeComesFromTheStartTimeAfterTheCommandName()
    {
        // a command name with a space and parentheses (the kernel prints it as it is), starttime
        // 12345 ticks = 123.45 s after boot
        const string stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 12345 8765440 321 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        Assert.Equal(1_550, LaunchClock.AgeMs(stat, 125_000_000_000));
        Assert.Null(LaunchClock.AgeMs(stat, 100_000_000_000)); // "started" in the future: not a time
        Assert.Null(LaunchClock.AgeMs("4242 (cut", 125_000_000_000));
        Assert.Null(LaunchClock.AgeMs("4242 (x) S 1 2", 125_000_000_000));
    }

    [Fact]
    public void AChildStartedASecondAgoIsASecondOld()
    {
        using var child = Process.Start(new ProcessStartInfo("sleep", "30") { UseShellExecute = false })!;
        try
        {
            Thread.Sleep(1_000);
            long? age = LaunchClock.ProcessAgeMs($"/proc/{child.Id}/stat");
            Assert.NotNull(age);
            // 10 ms ticks, and a busy machine may start the child late or wake this thread late
            Assert.InRange(age!.Value, 950, 3_000);
            long? own = LaunchClock.ProcessAgeMs();
            Assert.NotNull(own);
            Assert.True(own > age, $"this process ({own} ms) started before its child ({age} ms)");
        }
        finally
        {
            child.Kill();
        }
    }
}
