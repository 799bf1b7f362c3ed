namespace Retsnoop.Symbols.Tests;

/// <summary>uprobes: return types from DWARF, file offsets from program headers, function tables.</summary>
public class UserElfTests
{
    const string Src = """
        #include <stdbool.h>
        #include <stddef.h>
        typedef long ssize_type;
        typedef const char *name_t;
        struct pair { long a, b; };
        enum color { RED = -1, GREEN };
        enum flags { F1 = 1, F2 = 2 };
        typedef int (*handler_t)(int);
        static int counter;

        __attribute__((noinline)) int r_int(int x) { return x - 1; }
        __attribute__((noinline)) unsigned r_uint(unsigned x) { return x + 1; }
        __attribute__((noinline)) long r_long(long x) { return x * 2; }
        __attribute__((noinline)) unsigned long long r_ull(void) { return counter; }
        __attribute__((noinline)) short r_short(void) { return (short)counter; }
        __attribute__((noinline)) unsigned char r_uchar(void) { return (unsigned char)counter; }
        __attribute__((noinline)) signed char r_schar(void) { return (signed char)counter; }
        __attribute__((noinline)) bool r_bool(void) { return counter > 0; }
        __attribute__((noinline)) void r_void(void) { counter++; }
        __attribute__((noinline)) double r_double(void) { return counter / 2.0; }
        __attribute__((noinline)) void *r_ptr(void) { return &counter; }
        __attribute__((noinline)) const char *r_cstr(void) { return "x"; }
        __attribute__((noinline)) name_t r_typedef_ptr(void) { return "y"; }
        __attribute__((noinline)) ssize_type r_typedef_long(void) { return -counter; }
        __attribute__((noinline)) const volatile int r_cv_int(void) { return counter; }
        __attribute__((noinline)) struct pair r_struct(void) { struct pair p = { counter, 2 }; return p; }
        __attribute__((noinline)) enum color r_enum_signed(void) { return counter ? RED : GREEN; }
        __attribute__((noinline)) enum flags r_enum_unsigned(void) { return counter ? F1 : F2; }
        __attribute__((noinline)) handler_t r_fnptr(void) { return r_int; }
        /* inlined into main and also called through a pointer: an out-of-line copy whose DIE
           names its type only through DW_AT_abstract_origin when optimized */
        static inline int r_inline(int x) { return x * 3 + counter; }
        int (*volatile keep)(int) = r_inline;

        int main(int argc, char **argv)
        {
            (void)argv;
            r_void();
            return r_int(argc) + (int)r_uint(1) + (int)r_long(2) + (int)r_ull() + r_short() + r_uchar() + r_schar()
                + r_bool() + (int)r_double() + (r_ptr() != 0) + (r_cstr() != 0) + (r_typedef_ptr() != 0)
                + (int)r_typedef_long() + r_cv_int() + (int)r_struct().a + r_enum_signed() + (int)r_enum_unsigned()
                + (r_fnptr() != 0) + r_inline(argc) + keep(argc);
        }
        """;

    static readonly Dictionary<string, DwarfReturnType> Expected = new()
    {
        ["r_int"] = new(DwarfTypeKind.Signed, 4),
        ["r_uint"] = new(DwarfTypeKind.Unsigned, 4),
        ["r_long"] = new(DwarfTypeKind.Signed, 8),
        ["r_ull"] = new(DwarfTypeKind.Unsigned, 8),
        ["r_short"] = new(DwarfTypeKind.Signed, 2),
        ["r_uchar"] = new(DwarfTypeKind.Unsigned, 1),
        ["r_schar"] = new(DwarfTypeKind.Signed, 1),
        ["r_bool"] = new(DwarfTypeKind.Bool, 1),
        ["r_void"] = new(DwarfTypeKind.Void, 0),
        ["r_double"] = new(DwarfTypeKind.Float, 8),
        ["r_ptr"] = new(DwarfTypeKind.Pointer, 8),
        ["r_cstr"] = new(DwarfTypeKind.Pointer, 8),
        ["r_typedef_ptr"] = new(DwarfTypeKind.Pointer, 8),
        ["r_typedef_long"] = new(DwarfTypeKind.Signed, 8),
        ["r_cv_int"] = new(DwarfTypeKind.Signed, 4),
        ["r_struct"] = new(DwarfTypeKind.Composite, 16),
        ["r_enum_signed"] = new(DwarfTypeKind.Signed, 4),
        ["r_enum_unsigned"] = new(DwarfTypeKind.Unsigned, 4),
        ["r_fnptr"] = new(DwarfTypeKind.Pointer, 8),
        ["r_inline"] = new(DwarfTypeKind.Signed, 4),
        ["main"] = new(DwarfTypeKind.Signed, 4),
    };

    public static TheoryData<string, string> Compilers() => new()
    {
        { "gcc", "-g -O0" },
        { "gcc", "-gdwarf-4 -O2" },
        { "gcc", "-gdwarf-5 -O2 -fPIE -pie" },
        { "clang-14", "-g -O0" },
        { "clang-14", "-gdwarf-5 -O2" },
    };

    [Theory]
    [MemberData(nameof(Compilers))]
    public void ReturnTypesOfEveryFunction(string cc, string flags)
    {
        // clang-14 is one of the build packages that ./test installs
        Assert.True(Shell.Has(cc), $"{cc} is needed for this test");
        var dir = Directory.CreateTempSubdirectory("rs-rettype-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "t.c"), Src);
            Shell.Run($"cd {dir} && {cc} {flags} -o t t.c");
            var bin = Path.Combine(dir, "t");
            using var elf = ElfFile.Open(bin);
            var funcs = ElfFunctions.Read(elf);
            using var dwarf = DwarfSymbolizer.Open(bin);
            foreach (var (name, want) in Expected)
            {
                var f = funcs.All.SingleOrDefault(x => x.Names.Contains(name));
                if (f is null && name == "r_inline")
                    continue; // clang -O0 may name the copy differently; the others must all be there
                Assert.True(f is not null, $"{name} missing from the symbol tables ({cc} {flags})");
                Assert.True(want == dwarf.ReturnTypeOf(f!.Address), $"{name} ({cc} {flags}): want {want}, got {dwarf.ReturnTypeOf(f.Address)}");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void FileOffsetsFollowProgramHeaders()
    {
        var dir = Directory.CreateTempSubdirectory("rs-offsets-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "t.c"), Src);
            foreach (var (name, flags) in new[] { ("pie", "-fPIE -pie"), ("exec", "-no-pie -fno-pie") })
            {
                Shell.Run($"cd {dir} && gcc -g -O1 {flags} -o {name} t.c");
                var bin = Path.Combine(dir, name);
                using var elf = ElfFile.Open(bin);
                var funcs = ElfFunctions.Read(elf);
                // readelf: the .text section's address and file offset give every function's offset
                var text = Shell.Run($"readelf -SW {bin} | awk '$2 == \".text\" {{print $4, $5}}'").Trim().Split(' ');
                ulong addr = Convert.ToUInt64(text[0], 16), off = Convert.ToUInt64(text[1], 16);
                var main = funcs.All.Single(f => f.Names.Contains("main"));
                Assert.Equal(main.Address - addr + off, elf.FileOffsetOf(main.Address));
                Assert.Equal(main.Address, elf.AddressOfFileOffset(main.Address - addr + off));
                Assert.Null(elf.FileOffsetOf(0xffff_ffff_0000)); // in no segment
                Assert.Null(elf.AddressOfFileOffset((ulong)new FileInfo(bin).Length + 1));
                Assert.Equal(Convert.ToUInt64(Shell.Run($"readelf -hW {bin} | awk '/Entry point/ {{print $4}}'").Trim(), 16), elf.EntryPoint);
                Assert.Equal("_start", funcs.Find(elf.EntryPoint)!.Name);
                Assert.Null(funcs.Find(0x10));
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
