namespace Retsnoop.Model;

/// <summary>
/// --pinpoint: once a failure's origin function is known, probe its basic blocks and report the
/// path the next failing call took through it (return site, decisions on the way), follow the
/// error into an untraced callee it came from, and show what the kernel printed in the session.
/// </summary>
public sealed record PinpointSettings
{
    public bool Enabled { get; init; }
    /// <summary>-- COMMAND: how many times the command may be run again to catch the failure with
    /// the new probes in place.</summary>
    public int Repeats { get; init; } = 5;
    /// <summary>How many functions may be pinpointed in one run (origins and callees followed).</summary>
    public int MaxFunctions { get; init; } = 8;
    /// <summary>Follow an error into the untraced callee it came from.</summary>
    public bool Deepen { get; init; } = true;
    /// <summary>Kernel messages (printk, netlink extack) printed inside a session.</summary>
    public bool KernelMessages { get; init; } = true;
    /// <summary>func_flags/func_args room kept at load for functions added while attached.</summary>
    public int ReservedFunctions => Enabled && Deepen ? MaxFunctions : 0;
}
