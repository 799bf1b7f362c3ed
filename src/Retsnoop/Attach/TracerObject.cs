using System.Runtime.InteropServices;
using Retsnoop.Interop;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Attach;

/// <summary>
/// The BPF object of bpf/retsnoop.bpf.c, loaded for one run: only the programs of the chosen
/// mechanism, the config in .rodata, the maps sized and filled (function flags and argument
/// specs by function id, pid/comm filters, -J capture sizes). Owns its programs and maps.
/// </summary>
public sealed unsafe class TracerObject : IDisposable
{
    readonly BpfObject obj;

    TracerObject(BpfObject obj) => this.obj = obj;

    /// <param name="lean">the lean object (see <see cref="IsLean"/>), else the whole one</param>
    public static byte[] EmbeddedElf(bool lean = false)
    {
        var name = lean ? "retsnoop-lean.bpf.o" : "retsnoop.bpf.o";
        using var s = typeof(TracerObject).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"{name} is not embedded: the build did not compile bpf/");
        var buf = new byte[s.Length];
        s.ReadExactly(buf);
        return buf;
    }

    /// <summary>Whether the request can take the lean object (bpf/state.bpf.h, FEATURE): compiled
    /// without the code of -A, -T, -I, -B, --pinpoint and user stacks (uprobes, --user-stacks; -J
    /// probes record only with -T), which the verifier otherwise walks before dropping it: the
    /// kprobe session program is ~650 instructions instead of ~2,070.</summary>
    public static bool IsLean(AttachRequest req)
    {
        var s = req.Settings;
        return req.Args is null && !s.FuncTrace && !s.InterimStacks && !s.Lbr && !s.Pinpoint && !s.UserStacks
            && req.UserFunctions.Count == 0 && req.Probes.Count == 0;
    }

    /// <summary>Loads the programs of <paramref name="mode"/> (KprobeMulti, Kprobe or Fentry) for the
    /// kernel functions, the uprobe templates for user ones and the -J programs that are asked for.</summary>
    /// <param name="sessionKfunc">KprobeMulti mode: load the kprobe session program, calling this
    /// bpf_session_is_return kfunc (BTF id), instead of kprobe.multi's two programs</param>
    public static TracerObject Load(AttachRequest req, AttachMode mode, int? sessionKfunc = null)
    {
        Libc.RaiseMemlockLimit();
        var s = req.Settings;
        bool kernel = req.KernelFunctions.Count > 0, fentry = mode == AttachMode.Fentry;
        bool kprobeSession = sessionKfunc is not null;
        if (kprobeSession)
            SessionProgram.Register();
        if (kernel && fentry)
            TracingPrograms.Register();
        // -F where the kernel has multi links: the object's fentry/fexit are the vmlinux links' programs
        bool fentryMulti = kernel && fentry && req.KernelFunctions.Any(f => f.Module is null && TracingMultiLinks.Takes(f))
            && Bpf.TracingMultiErrno == 0;
        var obj = BpfObject.Open(EmbeddedElf(IsLean(req)), s.ExternalBtf);
        try
        {
            obj.SetAutoload(BpfPrograms.Fentry, kernel && fentry);
            obj.SetAutoload(BpfPrograms.Fexit, kernel && fentry);
            // only the programs of the mechanism in use: each costs a verifier pass (under
            // emulation a few hundred ms)
            bool multi = kernel && mode == AttachMode.KprobeMulti;
            obj.SetAutoload(BpfPrograms.Kprobe, kernel && mode == AttachMode.Kprobe);
            obj.SetAutoload(BpfPrograms.Kretprobe, kernel && mode == AttachMode.Kprobe);
            obj.SetAutoload(BpfPrograms.KprobeMultiEntry, multi && !kprobeSession);
            obj.SetAutoload(BpfPrograms.KprobeMultiExit, multi && !kprobeSession);
            obj.SetAutoload(BpfPrograms.KprobeSession, multi && kprobeSession);
            obj.SetAutoload(BpfPrograms.Uprobe, req.UserFunctions.Count > 0);
            obj.SetAutoload(BpfPrograms.Uretprobe, req.UserFunctions.Count > 0);
            obj.SetAutoload(BpfPrograms.InjKprobe, req.Probes.Any(p => p.Kind == InjectedKind.Kprobe));
            obj.SetAutoload(BpfPrograms.InjKretprobe, req.Probes.Any(p => p.Kind == InjectedKind.Kretprobe));
            obj.SetAutoload(BpfPrograms.InjTracepoint, req.Probes.Any(p => p.Kind == InjectedKind.Tracepoint));
            obj.SetAutoload(BpfPrograms.InjRawTracepoint, req.Probes.Any(p => p.Kind == InjectedKind.RawTracepoint));
            obj.SetMaxEntries(BpfPrograms.InjSize, (uint)Math.Max(1, req.Probes.Count));
            obj.SetAutoload(BpfPrograms.FollowFork, req.Settings.FollowForks);
            // --pinpoint: block probes need kprobes whatever the mechanism of the function probes
            obj.SetAutoload(BpfPrograms.PinpointHit, s.Pinpoint);
            obj.SetAutoload(BpfPrograms.PinpointKernelMessage, s.Pinpoint);
            if (s.Pinpoint)
                obj.SetMaxEntries(BpfPrograms.PinpointStates, Math.Min(s.SessionsSize, PinpointSessions));
            if (req.Settings.FollowForks)
                obj.SetMaxEntries(BpfPrograms.PidAllow, FollowedProcesses);
            if (kernel && fentry && !fentryMulti)
            {
                // the templates need some function to verify against; each clone gets its own
                var target = req.KernelFunctions.FirstOrDefault(f => f.BtfId > 0 && f.Module is null) ?? req.KernelFunctions.FirstOrDefault(f => f.BtfId > 0)
                    ?? throw new TracingException("no traced function has BTF, so none can be attached with fentry/fexit; try -K or -M");
                obj.SetAttachTarget(BpfPrograms.Fentry, target.Name);
                obj.SetAttachTarget(BpfPrograms.Fexit, target.Name);
            }
            obj.SetMaxEntries(BpfPrograms.RingBuffer, s.RingbufSize);
            obj.SetMaxEntries(BpfPrograms.Sessions, s.SessionsSize);
            var btf = req.KernelBtf?.Invoke() ?? TaskLayout.KernelBtfOf(s.ExternalBtf);
            if (SessionsMap.OnDemand(btf))
                obj.AddMapFlags(BpfPrograms.Sessions, SessionsMap.NoPrealloc);
            // --pinpoint: room for functions added while attached (ids after the resolved ones)
            int capacity = req.Functions.Count + s.ReservedFunctions;
            obj.SetMaxEntries(BpfPrograms.FuncFlags, (uint)Math.Max(1, capacity));
            obj.SetMaxEntries(BpfPrograms.FuncArgs, req.Args is null ? 1 : (uint)Math.Max(1, capacity));
            WriteConfig(obj, req, TaskLayout.FromBtf(btf));
            try
            {
                if (sessionKfunc is { } kfunc && multi)
                    SessionProgram.LoadWith(kfunc, obj.Load);
                else if (fentryMulti)
                    TracingPrograms.LoadAsMulti(obj.Load);
                else
                    obj.Load();
            }
            catch (BpfException e) when (kernel && fentry && e.Errno == 1)
            {
                throw new TracingException($"the kernel refused fentry/fexit programs ({Errno.Describe(1)}; kernel lockdown or missing capabilities?); try -K or -M for kprobes");
            }
            catch (BpfException e) when (e.FailedProgram == BpfPrograms.InjRawTracepoint)
            {
                throw new TracingException($"the kernel refused the raw tracepoint program for -J rawtp ({e.Summary}): raw tracepoint BPF cookies need Linux 6.10+; use -J tp:CATEGORY:NAME instead");
            }
            var loaded = new TracerObject(obj) { FunctionCapacity = capacity, FentryMulti = fentryMulti };
            loaded.FillMaps(req);
            return loaded;
        }
        catch
        {
            obj.Dispose();
            throw;
        }
    }

    static void WriteConfig(BpfObject obj, AttachRequest req, TaskLayout task)
    {
        var s = req.Settings;
        var args = s.Args ?? ArgLimits.Default;
        var cfg = new BpfConfig
        {
            MinDurationNs = s.MinDurationNs,
            EmitSuccessStacks = Flag(s.SuccessStacks),
            EmitFuncTrace = Flag(s.FuncTrace),
            HasPidAllow = Flag(s.AllowPids.Count > 0 || s.FollowForks),
            HasPidDeny = Flag(s.DenyPids.Count > 0),
            HasCommAllow = Flag(s.AllowComms.Count > 0),
            HasCommDeny = Flag(s.DenyComms.Count > 0),
            EmitInterimStacks = Flag(s.InterimStacks),
            CaptureArgs = Flag(req.Args is not null),
            CaptureRawPtrs = Flag(s.ArgsRawPtrs),
            FollowForks = Flag(s.FollowForks),
            UserStacks = Flag(s.UserStacks),
            ArgsMaxTotal = (uint)args.MaxTotal,
            ArgsMaxAny = (uint)Math.Max(args.MaxSized, args.MaxStr),
            UseLbr = Flag(s.Lbr),
            Pinpoint = Flag(s.Pinpoint),
            // a quarter of the sessions map may stay as idle entries that threads' next sessions
            // reuse; the rest is for sessions open at once
            IdleSessionsMax = s.SessionsSize / 4,
            SelfTgid = (uint)Environment.ProcessId,
            TaskTgidOff = task.Tgid,
            TaskGroupLeaderOff = task.GroupLeader,
            TaskCommOff = task.Comm,
        };
        var rodata = obj.ReadOnlyData();
        if (rodata.Length < sizeof(BpfConfig))
            throw new InvalidOperationException(".rodata of the BPF object is smaller than struct config");
        MemoryMarshal.Write(rodata, in cfg);
    }

    static byte Flag(bool b) => (byte)(b ? 1 : 0);

    /// <summary>--pinpoint: sessions that can record paths at once (each state is about 2 KiB).</summary>
    const uint PinpointSessions = 1024;

    /// <summary>Function ids the maps have room for (the resolved functions and the reserve).</summary>
    public int FunctionCapacity { get; private init; }

    /// <summary>--pinpoint: sets a function's flags (a function added while attached, or FUNC_PINPOINT).</summary>
    public void SetFunctionFlags(int id, FuncFlags flags)
    {
        if (id < 0 || id >= FunctionCapacity)
            throw new ArgumentOutOfRangeException(nameof(id), $"function id {id} beyond the {FunctionCapacity} the maps hold");
        uint key = (uint)id, val = (uint)flags;
        Bpf.MapUpdate(obj.MapFd(BpfPrograms.FuncFlags), &key, &val);
    }

    /// <summary>-- COMMAND: room in pid_allow for the command and the processes it forks.</summary>
    const uint FollowedProcesses = 65536;

    /// <summary>Lets a process through the pid filter (-- COMMAND's own process).</summary>
    public void AllowPid(int pid)
    {
        uint key = (uint)pid;
        byte one = 1;
        Bpf.MapUpdate(obj.MapFd(BpfPrograms.PidAllow), &key, &one);
    }

    void FillMaps(AttachRequest req)
    {
        int sizes = obj.MapFd(BpfPrograms.InjSize);
        for (int i = 0; i < req.Probes.Count; i++)
        {
            uint key = (uint)i, size = req.Probes[i].CaptureSize;
            Bpf.MapUpdate(sizes, &key, &size);
        }
        int fd = obj.MapFd(BpfPrograms.FuncFlags);
        foreach (var f in req.Functions)
        {
            uint id = (uint)f.Id, val = (uint)f.Flags;
            Bpf.MapUpdate(fd, &id, &val);
        }
        if (req.Args is { } argSpecs)
        {
            int afd = obj.MapFd(BpfPrograms.FuncArgs);
            foreach (var f in req.Functions)
            {
                uint id = (uint)f.Id;
                var spec = argSpecs[f.Id].ToBpf();
                Bpf.MapUpdate(afd, &id, &spec);
            }
        }
        var s = req.Settings;
        byte one = 1;
        foreach (var (list, map) in new[] { (s.AllowPids, BpfPrograms.PidAllow), (s.DenyPids, BpfPrograms.PidDeny) })
        {
            int mfd = obj.MapFd(map);
            foreach (var pid in list)
            {
                uint pidKey = (uint)pid;
                Bpf.MapUpdate(mfd, &pidKey, &one);
            }
        }
        byte* commKey = stackalloc byte[16];
        foreach (var (list, map) in new[] { (s.AllowComms, BpfPrograms.CommAllow), (s.DenyComms, BpfPrograms.CommDeny) })
        {
            int mfd = obj.MapFd(map);
            foreach (var comm in list)
            {
                new Span<byte>(commKey, 16).Clear();
                System.Text.Encoding.UTF8.GetBytes(comm.AsSpan(0, Math.Min(15, comm.Length)), new Span<byte>(commKey, 15));
                Bpf.MapUpdate(mfd, commKey, &one);
            }
        }
    }

    /// <summary>-F: the object's fentry/fexit programs were loaded as fentry.multi/fexit.multi (for
    /// vmlinux's functions); else as fentry/fexit on one target, templates for clones only.</summary>
    public bool FentryMulti { get; private init; }

    /// <summary>A non-owning handle on a program fd that the object owns.</summary>
    public FdHandle Program(string name) => new(obj.ProgramFd(name), ownsHandle: false);

    /// <summary>A loaded program's final (relocated) instructions, to load clones of it.</summary>
    public ReadOnlySpan<byte> Instructions(string name) => obj.Instructions(name);

    public int RingBufferFd => obj.MapFd(BpfPrograms.RingBuffer);

    public BpfStats ReadStats()
    {
        BpfStats s = default;
        uint key = 0;
        Bpf.MapLookup(obj.MapFd(BpfPrograms.Stats), &key, &s);
        return s;
    }

    public void Dispose() => obj.Dispose();
}
