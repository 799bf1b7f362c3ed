using Retsnoop.Interop;

namespace Retsnoop.Kernel;

/// <summary>Root, or the capabilities BPF tracing needs.</summary>
public static class Privileges
{
    const int CapSysAdmin = 21, CapPerfmon = 38, CapBpf = 39;

    /// <summary>null when we may trace, else the names of the missing capabilities.</summary>
    public static string? Missing()
    {
        // capabilities, not the uid: root under capsh/containers may lack some of them
        ulong eff = Libc.geteuid() == 0 ? ulong.MaxValue : 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                    eff = Convert.ToUInt64(line[7..].Trim(), 16);
            }
        }
        catch (IOException)
        {
        }
        bool Has(int cap) => (eff & (1UL << cap)) != 0;
        if (Has(CapSysAdmin) || (Has(CapBpf) && Has(CapPerfmon)))
            return null;
        var missing = new List<string>();
        if (!Has(CapBpf))
            missing.Add("CAP_BPF");
        if (!Has(CapPerfmon))
            missing.Add("CAP_PERFMON");
        return string.Join(" and ", missing);
    }
}
