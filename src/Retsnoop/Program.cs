namespace Retsnoop;

public static class Program
{
    public static int Main(string[] args) => Cli.Entry.Run(args);
}
