/* The user-space program the uprobe tests trace: a known call chain that fails at a known
 * depth. Lines marked "@name" are where the tests expect stack frames to point.
 * Built by the tests with gcc -g -O0 (frame pointers, no inlining).
 *
 *   uprobe_target [PATH]   main -> load_config -> parse_file -> open_file -> open(PATH)
 *
 * With a missing PATH (the default) open() fails with ENOENT, open_file returns -2,
 * parse_file passes it up, load_config returns NULL and main returns -1.
 *
 *   uprobe_target --stitch    main -> retry_load -> try_primary (-5), then log_fallback (0),
 *                             then retry_load returns try_primary's -5: a stitched stack
 *   uprobe_target --handled   the same, but retry_load returns 0: the error was handled
 *   uprobe_target --raw-syscall   the first chain, with open_file opening through syscall(2):
 *                             glibc's syscall() leaves the frame pointer alone, where its open()
 *                             uses rbp for itself, so a frame-pointer walk of the user stack from
 *                             inside the system call gets past libc only this way
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct config {
	int fd;
};

static struct config the_config;
static bool raw_syscall;

__attribute__((noinline)) int open_file(const char *path) { /* @open_file */
	int fd = raw_syscall ? (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY) : open(path, O_RDONLY); /* @open */
	if (fd < 0)
		return -2;
	return fd;
}

__attribute__((noinline)) long parse_file(const char *path) { /* @parse_file */
	long err = open_file(path); /* @call_open_file */
	if (err < 0)
		return err;
	return 0;
}

__attribute__((noinline)) struct config *load_config(const char *path) { /* @load_config */
	if (parse_file(path) < 0) /* @call_parse_file */
		return NULL;
	return &the_config;
}

/* succeeds: its result must never make a stack */
__attribute__((noinline)) bool config_dir_ok(void) { /* @config_dir_ok */
	return true;
}

__attribute__((noinline)) int try_primary(void) { /* @try_primary */
	return -5;
}

__attribute__((noinline)) int log_fallback(void) { /* @log_fallback */
	return 0;
}

/* fails because its first callee failed, though a later callee succeeded in between */
__attribute__((noinline)) int retry_load(int handled) { /* @retry_load */
	int err = try_primary(); /* @call_try_primary */
	if (err < 0 && log_fallback() == 0 && !handled)
		return err;
	return 0;
}

int main(int argc, char **argv) { /* @main */
	const char *path = argc > 1 ? argv[1] : "/nonexistent/retsnoop-uprobe-test.conf";

	if (argc > 1 && strcmp(argv[1], "--raw-syscall") == 0) {
		raw_syscall = true;
		path = "/nonexistent/retsnoop-uprobe-test.conf";
	}

	if (argc > 1 && (strcmp(argv[1], "--stitch") == 0 || strcmp(argv[1], "--handled") == 0))
		return retry_load(strcmp(argv[1], "--handled") == 0) < 0 ? -1 : 0; /* @call_retry_load */

	config_dir_ok();
	if (!load_config(path)) { /* @call_load_config */
		fprintf(stderr, "load_config(%s) failed\n", path);
		return -1;
	}
	printf("loaded %s\n", path);
	return 0;
}
