namespace Retsnoop.Cli;

/// <summary>
/// The option table, the -c cases and the -B names as plain data, for what is generated from them
/// outside the program (the man page and the bash completion, tools/packaging): views of the very
/// tables the parser and --help use, so those files cannot drift from them.
/// </summary>
public static partial class OptionParser
{
    public enum ValueKind { None, Required, Optional }

    /// <param name="Short">the letter, or '\0' for a long-only option</param>
    /// <param name="Value">whether it takes a value (an optional one only attached: -Sn, --lbr=any)</param>
    public sealed record OptionInfo(char Short, string Long, ValueKind Value, string Meta, string Help);

    public sealed record CaseInfo(string Name, IReadOnlyList<string> Entry, IReadOnlyList<string> Allow, IReadOnlyList<string> Deny);

    public static IReadOnlyList<OptionInfo> OptionTable =>
        [.. Opts.Select(o => new OptionInfo(o.Short, o.Long, o.Arg switch
        {
            Arg.Required => ValueKind.Required,
            Arg.Optional => ValueKind.Optional,
            _ => ValueKind.None,
        }, o.Meta, o.Help))];

    public static IReadOnlyList<CaseInfo> CaseTable => [.. Presets.Select(p => new CaseInfo(p.Name, p.Entry, p.Allow, p.Deny))];

    public static IReadOnlyList<string> LbrNames => [.. LbrFlags.Select(f => f.Name)];
}
