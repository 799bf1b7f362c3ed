using System.Text.RegularExpressions;
using Retsnoop.Cli;

namespace Retsnoop.DocGen;

/// <summary>The version, from the one place the program keeps it (RetsnoopCommand.Version).</summary>
public static partial class ProductVersion
{
    [GeneratedRegex(@"\bv?(\d+\.\d+\.\d+[0-9A-Za-z.+~]*)")]
    private static partial Regex Number();

    /// <summary>"retsnoop v0.1.0 (C#)" -> "0.1.0".</summary>
    public static string Debian => Number().Match(RetsnoopCommand.Version) is { Success: true } m
        ? m.Groups[1].Value
        : throw new InvalidOperationException($"no version number in RetsnoopCommand.Version '{RetsnoopCommand.Version}'");
}
