namespace Retsnoop.Output;

/// <summary>Turns BPF timestamps (CLOCK_MONOTONIC ns) into local wall-clock time of day.</summary>
public sealed class Clock
{
    readonly DateTime utcAtStart;
    readonly long monoNsAtStart;
    readonly long unixOffsetNs; // realtime (UTC) - monotonic, in ns
    long? localOffsetNs; // local wall clock - monotonic, in ns: the time zone is read at the first use

    public Clock()
    {
        long mono = System.Diagnostics.Stopwatch.GetTimestamp(); // CLOCK_MONOTONIC on Linux, ns ticks
        monoNsAtStart = (long)(mono * (1e9 / System.Diagnostics.Stopwatch.Frequency));
        utcAtStart = DateTime.UtcNow;
        unixOffsetNs = (utcAtStart.Ticks - DateTime.UnixEpoch.Ticks) * 100 - monoNsAtStart;
    }

    // the local offset as it was when the clock was made; read late (the time zone file and
    // TimeZoneInfo's code are a few ms of a start that prints no time)
    long LocalOffsetNs => localOffsetNs ??= (utcAtStart.ToLocalTime().Ticks - DateTime.UnixEpoch.Ticks) * 100 - monoNsAtStart;

    public DateTime ToLocal(ulong monoNs) => DateTime.UnixEpoch.AddTicks(((long)monoNs + LocalOffsetNs) / 100);

    /// <summary>The same instant as nanoseconds since the Unix epoch (UTC).</summary>
    public long ToUnixNs(ulong monoNs) => (long)monoNs + unixOffsetNs;

    public string Format(ulong monoNs) => ToLocal(monoNs).ToString("HH:mm:ss.ffffff", System.Globalization.CultureInfo.InvariantCulture);
}
