using System.Globalization;
using Retsnoop.Interop;

namespace Retsnoop.Model;

/// <summary>What kind of value a function result is, as both renderers show it.</summary>
public enum ResultKind { Void, Errno, Null, Pointer, Bool, Int, Pending }

/// <summary>
/// One function result, classified once: the text renderer prints <see cref="Text"/>, the JSON
/// renderer writes the parts, so the two cannot disagree.
/// </summary>
public readonly record struct ResultView(ResultKind Kind, long Value, string? ErrnoName, bool IsHex, string Text)
{
    /// <summary>A traced function that had not returned yet when the session was reported.</summary>
    public static readonly ResultView Pending = new(ResultKind.Pending, 0, null, false, "[...]");

    /// <summary>The errno (positive) for an errno result, else 0.</summary>
    public int Errno => Kind == ResultKind.Errno ? (int)-Value : 0;

    /// <summary>The bare text without brackets: -E2BIG, NULL, 0x..., 42.</summary>
    public string Bare => Text[1..^1];
}

/// <summary>How a function result prints: [-ENOMEM], [NULL], [0xffff...], [true], [void], [42].</summary>
public static class ResultFormat
{
    public static long Normalize(long res, ReturnClass rc) => rc switch
    {
        ReturnClass.Int or ReturnClass.Unknown => (int)res,
        ReturnClass.UInt => (uint)res is >= unchecked((uint)-4095) ? (int)res : (uint)res,
        _ => res,
    };

    public static ResultView View(long res, ReturnClass rc)
    {
        if (rc == ReturnClass.Void)
            return new(ResultKind.Void, 0, null, false, "[void]");
        res = Normalize(res, rc);
        if (res < 0 && res >= -4095)
        {
            var name = Errno.Name((int)-res);
            return new(ResultKind.Errno, res, name, false, name is null ? $"[{res}]" : $"[-{name}]");
        }
        return rc switch
        {
            ReturnClass.Pointer => res == 0 ? new(ResultKind.Null, 0, null, false, "[NULL]") : new(ResultKind.Pointer, res, null, true, Hex(res)),
            ReturnClass.Bool => new(ResultKind.Bool, res == 0 ? 0 : 1, null, false, res == 0 ? "[false]" : "[true]"),
            _ when res >= -1024L * 1024 * 1024 && res < 1024 * 1024 => new(ResultKind.Int, res, null, false, $"[{res.ToString(CultureInfo.InvariantCulture)}]"),
            _ => new(ResultKind.Int, res, null, true, Hex(res)),
        };
    }

    /// <summary>A traced function's result: kernel conventions, or plain values for user-space functions.</summary>
    public static ResultView View(TracedFunction f, long res) => f.IsUser ? ViewUser(res, f.Return) : View(res, f.Return);

    /// <summary>uprobes: user code has no single errno convention (-1 is not EPERM), so integers are
    /// plain numbers of the function's width.</summary>
    public static ResultView ViewUser(long res, ReturnClass rc) => rc switch
    {
        ReturnClass.Void => new(ResultKind.Void, 0, null, false, "[void]"),
        ReturnClass.Pointer => res == 0 ? new(ResultKind.Null, 0, null, false, "[NULL]") : new(ResultKind.Pointer, res, null, true, Hex(res)),
        ReturnClass.Bool => new(ResultKind.Bool, (byte)res == 0 ? 0 : 1, null, false, (byte)res == 0 ? "[false]" : "[true]"),
        ReturnClass.Int or ReturnClass.Unknown => Plain((int)res),
        ReturnClass.UInt => Plain((uint)res),
        ReturnClass.Long => Plain(res),
        _ => new(ResultKind.Int, res, null, true, Hex(res)),
    };

    static ResultView Plain(long v) => new(ResultKind.Int, v, null, false, $"[{v.ToString(CultureInfo.InvariantCulture)}]");

    public static string Format(long res, ReturnClass rc) => View(res, rc).Text;

    public static string Format(TracedFunction f, long res) => View(f, res).Text;

    public static string FormatUser(long res, ReturnClass rc) => ViewUser(res, rc).Text;

    static string Hex(long v) => $"[0x{(ulong)v:x}]";

    /// <summary>The errno a result stands for (positive), 0 for a NULL pointer, null for no error.</summary>
    public static int? ErrorOf(long res, ReturnClass rc)
    {
        if (rc is ReturnClass.Void or ReturnClass.Bool or ReturnClass.Other)
            return null;
        res = Normalize(res, rc);
        if (res < 0 && res >= -4095)
            return (int)-res;
        if (rc == ReturnClass.Pointer && res == 0)
            return 0;
        return null;
    }

    /// <summary>A stack frame's latency as printed: whole microseconds, "..." while running.</summary>
    public static string Duration(ulong ns) => $"{ns / 1000}us";

    /// <summary>A call trace latency as printed: microseconds with three decimals.</summary>
    public static string TraceDuration(ulong ns) => (ns / 1000.0).ToString("0.000", CultureInfo.InvariantCulture) + "us";
}
