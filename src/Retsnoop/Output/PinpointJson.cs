using System.Text.Json;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>--pinpoint in JSON (docs/json.md): "kernel_messages" and "pinpoint" in the stack object,
/// each left out when the report has none.</summary>
static class PinpointJson
{
    public static void Write(Utf8JsonWriter w, SessionReport r)
    {
        if (r.KernelMessages.Count > 0)
        {
            w.WriteStartArray("kernel_messages");
            foreach (var m in r.KernelMessages)
            {
                w.WriteStartObject();
                w.WriteString("source", m.Kind == Wire.KernelMessageKind.NetlinkExtack ? "netlink_extack" : "printk");
                w.WriteString("text", m.Text);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (r.Pinpoint is not { } p)
            return;
        w.WriteStartObject("pinpoint");
        w.WriteString("function", p.Function.Name);
        if (p.Function.Module is { } mod)
            w.WriteString("module", mod);
        else
            w.WriteNull("module");
        JsonRenderer.WriteResult(w, "result", p.Result);
        w.WriteString("verdict", VerdictName(p.Verdict));
        w.WriteString("verdict_text", PinpointText.Verdict(p));
        WritePoint(w, "return_site", p.ReturnSite);
        w.WriteStartArray("return_lines");
        foreach (var l in p.ReturnLines)
            WriteLine(w, l);
        w.WriteEndArray();
        if (p.Constant is { } k)
            w.WriteNumber("constant", k);
        if (p.ArgumentIndex is { } a)
            w.WriteNumber("argument", a);
        if (p.Callee is { } c)
        {
            w.WriteStartObject("callee");
            if (c.Name is { } n)
                w.WriteString("function", n);
            else
                w.WriteNull("function");
            if (c.Target is { } t)
                w.WriteString("address", $"0x{t:x}");
            else
                w.WriteNull("address");
            w.WriteBoolean("indirect", c.Indirect);
            w.WriteBoolean("tail_call", c.TailCall);
            if (c.Why is { } why)
                w.WriteString("not_followed", why);
            else
                w.WriteNull("not_followed");
            WritePoint(w, "call_site", c.Site);
            w.WriteEndObject();
        }
        w.WriteNumber("blocks_run", p.BlocksRun);
        w.WriteNumber("blocks", p.Blocks);
        w.WriteBoolean("truncated", p.Truncated);
        w.WriteStartArray("path");
        foreach (var b in p.Path)
            w.WriteNumberValue(b);
        w.WriteEndArray();
        w.WriteStartArray("decisions");
        foreach (var d in p.Decisions)
        {
            w.WriteStartObject();
            w.WriteString("address", $"0x{d.Branch.Address:x}");
            w.WriteNumber("offset", d.Branch.Offset);
            w.WriteBoolean("taken", d.Taken);
            w.WriteStartArray("lines");
            foreach (var l in d.Lines)
                WriteLine(w, l);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("notes");
        foreach (var n in p.Notes)
            w.WriteStringValue(n);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    static string VerdictName(PinpointVerdict v) => v switch
    {
        PinpointVerdict.Constant => "constant",
        PinpointVerdict.Computed => "computed",
        PinpointVerdict.Loaded => "loaded",
        PinpointVerdict.Callee => "callee",
        PinpointVerdict.IndirectCall => "indirect_call",
        PinpointVerdict.Argument => "argument",
        _ => "unknown",
    };

    static void WritePoint(Utf8JsonWriter w, string name, CodePoint p)
    {
        w.WriteStartObject(name);
        w.WriteString("address", $"0x{p.Address:x}");
        w.WriteString("function", p.Function);
        w.WriteNumber("offset", p.Offset);
        if (p.Location is { } l)
        {
            if (l.Function != p.Function)
                w.WriteString("source_function", l.Function);
            JsonRenderer.WriteWhere(w, l);
            // the functions inlined at this address, outermost first (Locations is innermost first)
            JsonRenderer.WriteInlined(w, [.. p.Locations.Skip(1).Reverse()]);
        }
        w.WriteEndObject();
    }

    static void WriteLine(Utf8JsonWriter w, Model.SourceLocation l)
    {
        w.WriteStartObject();
        w.WriteString("function", l.Function);
        JsonRenderer.WriteWhere(w, l);
        w.WriteEndObject();
    }
}
