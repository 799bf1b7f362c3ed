using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>kallsyms behind the resolver's and the output's interfaces.</summary>
public sealed class KallsymsTable(Kallsyms ks) : IFunctionAddresses, IKernelSymbols
{
    public IReadOnlyList<ulong> TextAddresses(string name, string? module)
    {
        var list = new List<ulong>();
        foreach (var a in ks.AddressesOf(name))
        {
            // weak functions nothing overrides ('W') are text too (6.1 lists several as traceable)
            if (ks.TryResolve(a, out var sym, out var off) && off == 0 && sym.Module == module && char.ToLowerInvariant(sym.Type) is 't' or 'w')
                list.Add(a);
        }
        return list;
    }

    public ulong? FunctionStart(ulong address) =>
        ks.TryResolve(address, out var sym, out _) ? sym.Address : null;

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
    {
        if (ks.TryResolve(address, out var sym, out offset))
        {
            name = sym.Name;
            module = sym.Module;
            return true;
        }
        name = "";
        module = null;
        return false;
    }
}
