using System.Text;

namespace Retsnoop.Model;

/// <summary>Escapes control characters so names from the kernel, processes or debug info cannot drive the terminal.</summary>
public static class TerminalSafe
{
    public static string Escape(string s)
    {
        int i = 0;
        while (i < s.Length && !IsControl(s[i]))
            i++;
        if (i == s.Length)
            return s;
        var sb = new StringBuilder(s.Length + 8);
        sb.Append(s, 0, i);
        for (; i < s.Length; i++)
        {
            char c = s[i];
            if (IsControl(c))
                sb.Append(c <= 0xff ? $"\\x{(int)c:x2}" : $"\\u{(int)c:x4}");
            else
                sb.Append(c);
        }
        return sb.ToString();
    }

    static bool IsControl(char c) => c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == '\u2028' || c == '\u2029' || c == '\u202e';
}
