namespace Retsnoop.Model;

/// <summary>Shell-style glob with '*' (any run) and '?' (one character), matched without allocation:
/// as chars, or as UTF-8 bytes where names lie in a kernel list (no decoding per name).</summary>
public sealed class Glob
{
    public string Pattern { get; }
    readonly bool literal;
    readonly byte[] utf8;
    // the pattern's parts between '*'s (when it has no '?'), as chars and as UTF-8: the first is a prefix, the last a
    // suffix, those between are found in order (leftmost is enough: a later one can only leave
    // less room for the rest). A kernel list has ~60,000 names and -a '*pcpu*' scans them all:
    // vectorized prefix, suffix and substring searches instead of a byte-by-byte backtracking walk.
    readonly byte[][]? utf8Parts;
    readonly char[][]? charParts;
    readonly byte[]? longestPart;

    public Glob(string pattern)
    {
        Pattern = pattern;
        literal = pattern.IndexOfAny(['*', '?']) < 0;
        utf8 = System.Text.Encoding.UTF8.GetBytes(pattern);
        if (!literal && !pattern.Contains('?'))
        {
            charParts = [.. pattern.Split('*').Select(p => p.ToCharArray())];
            utf8Parts = [.. charParts.Select(System.Text.Encoding.UTF8.GetBytes)];
            longestPart = utf8Parts.MaxBy(p => p.Length);
        }
    }

    public bool IsLiteral => literal;

    /// <summary>The pattern as UTF-8 (for a literal: the name to look up).</summary>
    public ReadOnlySpan<byte> Utf8 => utf8;

    /// <summary>For a '*' pattern (no '?'), its longest part between '*'s: every name it matches
    /// contains these bytes (empty otherwise: "*", literals and '?' patterns).</summary>
    public ReadOnlySpan<byte> LongestPart => longestPart;

    public bool Matches(ReadOnlySpan<char> s) =>
        literal ? s.SequenceEqual(Pattern) : charParts is not null ? MatchParts(s, charParts) : Match(Pattern, s, '*', '?');

    /// <summary>The same answer for a name given as UTF-8 (kernel function names are ASCII; a '?'
    /// against a name with other characters is decided on chars).</summary>
    public bool MatchesUtf8(ReadOnlySpan<byte> s)
    {
        if (literal)
            return s.SequenceEqual(utf8);
        if (utf8Parts is not null)
            return MatchParts(s, utf8Parts);
        return System.Text.Ascii.IsValid(s) ? Match<byte>(utf8, s, (byte)'*', (byte)'?') : Matches(System.Text.Encoding.UTF8.GetString(s));
    }

    static bool MatchParts<T>(ReadOnlySpan<T> s, T[][] parts) where T : IEquatable<T>
    {
        ReadOnlySpan<T> first = parts[0], last = parts[^1];
        if (s.Length < first.Length + last.Length || !s.StartsWith(first) || !s.EndsWith(last))
            return false;
        s = s[first.Length..^last.Length];
        for (int i = 1; i < parts.Length - 1; i++)
        {
            int at = s.IndexOf(parts[i]);
            if (at < 0)
                return false;
            s = s[(at + parts[i].Length)..];
        }
        return true;
    }

    // '?' patterns: an iterative matcher with single-star backtracking, linear for typical globs
    static bool Match<T>(ReadOnlySpan<T> p, ReadOnlySpan<T> s, T star, T question) where T : IEquatable<T>
    {
        int pi = 0, si = 0, starP = -1, starS = 0;
        while (si < s.Length)
        {
            if (pi < p.Length && (p[pi].Equals(question) || p[pi].Equals(s[si])))
            {
                pi++;
                si++;
            }
            else if (pi < p.Length && p[pi].Equals(star))
            {
                starP = pi++;
                starS = si;
            }
            else if (starP >= 0)
            {
                pi = starP + 1;
                si = ++starS;
            }
            else
            {
                return false;
            }
        }
        while (pi < p.Length && p[pi].Equals(star))
            pi++;
        return pi == p.Length;
    }

    public override string ToString() => Pattern;
}

/// <summary>One -e/-a/-d argument: "name_glob", "name_glob [module_glob]", ":source/path/glob.c"
/// or, for user-space functions, "u:BINARY:name_glob".</summary>
public sealed record FunctionSpec(string Text, Glob? Name, Glob? Module, string? SourceGlob)
{
    /// <summary>uprobes: the binary of a "u:BINARY:GLOB" spec (a path, a library or program name); null for kernel specs.</summary>
    public string? UserBinary { get; init; }

    public bool IsUser => UserBinary is not null;

    /// <summary>From a -c preset: unlike the user's own globs, it may match nothing.</summary>
    public bool Optional { get; init; }

    public const string UserPrefix = "u:";

    /// <summary>Is this -e/-a/-d argument a user-space spec ("u:BINARY:GLOB")?</summary>
    public static bool IsUserText(string text) => text.TrimStart().StartsWith(UserPrefix, StringComparison.Ordinal);

    public static FunctionSpec Parse(string text)
    {
        var t = text.Trim();
        if (t.StartsWith(UserPrefix, StringComparison.Ordinal))
        {
            // the glob follows the last ':' (C function names have none), so a path may contain ':'
            var rest = t[UserPrefix.Length..];
            int colon = rest.LastIndexOf(':');
            if (colon <= 0 || colon == rest.Length - 1 || rest[..colon].Trim().Length == 0)
                throw new UsageException($"bad user-space target '{text}': expected 'u:BINARY:FUNCTION_GLOB', e.g. 'u:libc:*open*' or 'u:/usr/bin/app:parse_*'");
            return new FunctionSpec(text, new Glob(rest[(colon + 1)..].Trim()), null, null) { UserBinary = rest[..colon].Trim() };
        }
        if (t.StartsWith(':'))
        {
            if (t.Length == 1)
                throw new UsageException($"empty source glob '{text}': expected ':path/*.c'");
            return new FunctionSpec(text, null, null, t[1..]);
        }
        int lb = t.IndexOf('[');
        if (lb >= 0)
        {
            int rb = t.IndexOf(']', lb);
            if (rb < 0 || rb != t.Length - 1)
                throw new UsageException($"bad glob '{text}': a module is given as 'glob [module]'");
            var name = t[..lb].Trim();
            var mod = t[(lb + 1)..rb].Trim();
            if (mod.Length == 0)
                throw new UsageException($"bad glob '{text}': empty module name in [ ]");
            return new FunctionSpec(text, new Glob(name.Length == 0 ? "*" : name), new Glob(mod), null);
        }
        if (t.Length == 0)
            throw new UsageException("empty function glob");
        return new FunctionSpec(text, new Glob(t), null, null);
    }

    /// <summary>Module "vmlinux" (or no module in the spec) selects core kernel functions.</summary>
    public bool Matches(ReadOnlySpan<char> name, string? module) =>
        Name is not null && Name.Matches(name) && ModuleMatches(module);

    /// <summary><see cref="Matches(ReadOnlySpan{char}, string?)"/> for a name given as UTF-8.</summary>
    public bool MatchesUtf8(ReadOnlySpan<byte> name, string? module) =>
        Name is not null && Name.MatchesUtf8(name) && ModuleMatches(module);

    bool ModuleMatches(string? module) => Module is null || Module.Matches(module ?? "vmlinux");
}
