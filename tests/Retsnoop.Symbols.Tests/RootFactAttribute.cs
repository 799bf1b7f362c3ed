namespace Retsnoop.Symbols.Tests;

/// <summary>A fact that needs root: skipped, saying why, otherwise (xunit 2 decides skips at
/// discovery; its runtime Assert.Skip exists only from xunit 3).</summary>
public sealed class RootFactAttribute : FactAttribute
{
    [System.Runtime.InteropServices.DllImport("libc")]
    static extern uint geteuid();

    public static bool IsRoot { get; } = geteuid() == 0;

    public RootFactAttribute(string why)
    {
        if (!IsRoot)
            Skip = $"needs root: {why} (run ./test as root)";
    }
}
