namespace Retsnoop.Output;

/// <summary>Turns BPF timestamps (CLOCK_MONOTONIC ns) into local wall-clock time of day.</summary>
public sealed class Clock
{
    readonly long offsetNs; // local wall clock - monotonic, in ns
    readonly long unixOffsetNs; // realtime (UTC) - monotonic, in ns

    public Clock()
    {
        long mono = System.Diagnostics.Stopwatch.GetTimestamp(); // CLOCK_MONOTONIC on Linux, ns ticks
        long monoNs = (long)(mono * (1e9 / System.Diagnostics.Stopwatch.Frequency));
        var utc = DateTime.UtcNow;
        long realNs = (utc.ToLocalTime().Ticks - DateTime.UnixEpoch.Ticks) * 100;
        offsetNs = realNs - monoNs;
        unixOffsetNs = (utc.Ticks - DateTime.UnixEpoch.Ticks) * 100 - monoNs;
    }

    public DateTime ToLocal(ulong monoNs) => DateTime.UnixEpoch.AddTicks(((long)monoNs + offsetNs) / 100);

    /// <summary>The same instant as nanoseconds since the Unix epoch (UTC).</summary>
    public long ToUnixNs(ulong monoNs) => (long)monoNs + unixOffsetNs;

    public string Format(ulong monoNs) => ToLocal(monoNs).ToString("HH:mm:ss.ffffff", System.Globalization.CultureInfo.InvariantCulture);
}
