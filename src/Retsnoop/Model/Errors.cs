namespace Retsnoop.Model;

// One error style per layer: every stage throws one of these with a one-line message the user can
// act on; the command prints it as "retsnoop: MESSAGE" and exits non-zero, without a stack trace.

/// <summary>A bad command line or option value (a malformed glob, an unknown error name): exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>A tracing setup problem (no BTF, a glob that matches nothing, a kernel that refuses an
/// attach mode): exit code 1.</summary>
public sealed class TracingException(string message) : Exception(message);
