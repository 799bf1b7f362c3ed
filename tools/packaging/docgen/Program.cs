using Retsnoop.DocGen;

// docgen --out DIR [--date YYYY-MM-DD]: writes DIR/retsnoop.1 (roff), DIR/retsnoop.bash-completion
// and DIR/version (the package version, from RetsnoopCommand.Version).
string? outDir = null, date = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--out" when i + 1 < args.Length: outDir = args[++i]; break;
        case "--date" when i + 1 < args.Length: date = args[++i]; break;
        default:
            Console.Error.WriteLine($"docgen: unexpected argument '{args[i]}' (usage: docgen --out DIR [--date YYYY-MM-DD])");
            return 2;
    }
}
if (outDir is null)
{
    Console.Error.WriteLine("docgen: usage: docgen --out DIR [--date YYYY-MM-DD]");
    return 2;
}
Directory.CreateDirectory(outDir);
date ??= DateTime.UtcNow.ToString("yyyy-MM-dd");
File.WriteAllText(Path.Combine(outDir, "retsnoop.1"), ManPage.Render(date));
File.WriteAllText(Path.Combine(outDir, "retsnoop.bash-completion"), BashCompletion.Render());
File.WriteAllText(Path.Combine(outDir, "version"), ProductVersion.Debian + "\n");
return 0;
