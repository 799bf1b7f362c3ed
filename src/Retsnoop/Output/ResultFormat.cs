using Retsnoop.Interop;
using Retsnoop.Tracing;

namespace Retsnoop.Output;

/// <summary>How a function result prints: [-ENOMEM], [NULL], [0xffff...], [true], [void], [42].</summary>
public static class ResultFormat
{
    public static long Normalize(long res, ReturnClass rc) => rc switch
    {
        ReturnClass.Int or ReturnClass.Unknown => (int)res,
        ReturnClass.UInt => (uint)res is >= unchecked((uint)-4095) ? (int)res : (uint)res,
        _ => res,
    };

    public static string Format(long res, ReturnClass rc)
    {
        if (rc == ReturnClass.Void)
            return "[void]";
        res = Normalize(res, rc);
        if (res < 0 && res >= -4095)
        {
            var name = Errno.Name((int)-res);
            return name is null ? $"[{res}]" : $"[-{name}]";
        }
        return rc switch
        {
            ReturnClass.Pointer => res == 0 ? "[NULL]" : $"[0x{(ulong)res:x}]",
            ReturnClass.Bool => res == 0 ? "[false]" : "[true]",
            _ when res >= -1024L * 1024 * 1024 && res < 1024 * 1024 => $"[{res}]",
            _ => $"[0x{(ulong)res:x}]",
        };
    }

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

    public static string Duration(ulong ns) => $"{ns / 1000}us";
}
