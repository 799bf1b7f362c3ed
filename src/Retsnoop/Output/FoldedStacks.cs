using System.Text;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>
/// --folded FILE: the reported failure stacks in the collapsed-stack format flame graph tools read
/// (flamegraph.pl, inferno, speedscope): one line per distinct stack, its frames outermost first
/// joined by ';', a space and how many reported stacks had it. Frames are function names as the
/// stack shows them (module functions "func [module]", inlined functions as frames of their own)
/// without offsets, so the same path through the kernel counts once however it was reached.
/// </summary>
public sealed class FoldedStacks
{
    readonly Dictionary<string, int> counts = new(StringComparer.Ordinal);

    /// <summary>Counts a report whose stack has a failing traced function (success stacks of -S are left out).</summary>
    public void Add(SessionReport r)
    {
        if (r.Outcome.Origin is null)
            return;
        var frames = Frames(r);
        if (frames.Count == 0)
            return;
        var key = string.Join(';', frames);
        counts[key] = counts.GetValueOrDefault(key) + 1;
    }

    /// <summary>Most frequent first, then in ordinal order, so the file is stable.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        foreach (var (stack, count) in counts.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal))
            sb.Append(stack).Append(' ').Append(count).Append('\n');
        return sb.ToString();
    }

    /// <summary>The stack's frames outermost first: merged rows with their inlined callees, or the traced chain.</summary>
    public static List<string> Frames(SessionReport r)
    {
        var frames = new List<string>();
        if (r.Rows is { } rows)
        {
            foreach (var row in rows)
            {
                frames.Add(Clean(row.Module is null ? row.Symbol : $"{row.Symbol} [{row.Module}]"));
                foreach (var inl in row.Inlined)
                    frames.Add(Clean(inl.Function));
            }
        }
        else
        {
            foreach (var f in r.Stack.Chain)
                frames.Add(Clean(f.Func.DisplayName));
        }
        return frames;
    }

    // ';' separates frames and a line ends the stack: neither may appear inside a name
    static string Clean(string name)
    {
        if (name.AsSpan().IndexOfAny(";\n\r") < 0)
            return name;
        return name.Replace(';', ':').Replace('\n', ' ').Replace('\r', ' ');
    }
}
