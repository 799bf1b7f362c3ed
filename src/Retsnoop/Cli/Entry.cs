namespace Retsnoop.Cli;

public static class Entry
{
    public static int Run(string[] args)
    {
        Console.WriteLine("retsnoop (C#)");
        return 0;
    }
}
