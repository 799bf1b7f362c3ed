using System.Diagnostics;
using Retsnoop.Interop;

namespace Retsnoop.Cli;

/// <summary>
/// Milliseconds since this process was started, what a user waiting for "Receiving data..."
/// counts: the run's own clock plus the process's age when the clock was made, from the kernel's
/// start time in /proc/self/stat (clock ticks since boot, 10 ms each) against CLOCK_BOOTTIME. (The
/// runtime's start before Main is ~0.1 s of a TCG guest's launch.) Without /proc: the run's clock.
/// </summary>
/// <param name="readAge">whether to read the process's age (only -v prints these times: a run
/// without it reads nothing for them)</param>
sealed class LaunchClock(bool readAge)
{
    readonly Stopwatch sinceMade = Stopwatch.StartNew();
    readonly long ageWhenMadeMs = readAge ? ProcessAgeMs() ?? 0 : 0;

    public long ElapsedMilliseconds => ageWhenMadeMs + sinceMade.ElapsedMilliseconds;

    /// <summary>The age in ms of this process (or of the one whose stat file is given), or null
    /// when its start time cannot be read.</summary>
    internal static long? ProcessAgeMs(string statPath = "/proc/self/stat")
    {
        try
        {
            return Libc.BootTimeNs() is { } nowNs ? AgeMs(File.ReadAllText(statPath), nowNs) : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The age in ms at <paramref name="bootTimeNs"/> of the process a /proc/PID/stat line
    /// describes; null when the line does not read.</summary>
    internal static long? AgeMs(string stat, long bootTimeNs)
    {
        // USER_HZ: the unit of /proc's clock fields, 100 on every Linux architecture's ABI
        const long TicksPerSecond = 100;
        // "PID (COMM) STATE ..." where COMM may hold spaces and parentheses: the fields after the
        // last ')'; starttime is field 22, the 20th of them
        int close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 > stat.Length)
            return null;
        var fields = stat[(close + 2)..].Split(' ');
        if (fields.Length < 20 || !long.TryParse(fields[19], out long startTicks))
            return null;
        long age = bootTimeNs / 1_000_000 - startTicks * 1000 / TicksPerSecond;
        return age >= 0 ? age : null;
    }
}
