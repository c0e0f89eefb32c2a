/* A wall clock moved by a file, preloaded (LD_PRELOAD) into a hub process by the end-to-end
 * tests to skew one node's clock while it runs. It moves CLOCK_REALTIME (and gettimeofday,
 * time) by the whole seconds written in the file named by CLOCK_SHIM_FILE, read again at most
 * every 100 ms; the monotonic clocks (timers, timeouts) are left alone, as a skewed machine's
 * are. It reads the real clock and the file by system calls and never allocates: libfaketime,
 * which allocates while it starts, recurses forever beside jemalloc, the hub's allocator. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic long long offset_ns = 0;
static _Atomic long long next_read_ns = 0;

static int real_clock(clockid_t clock, struct timespec *ts) {
  return (int)syscall(SYS_clock_gettime, clock, ts);
}

static void refresh(void) {
  struct timespec mono;
  if (real_clock(CLOCK_MONOTONIC, &mono) != 0) return;
  long long now = mono.tv_sec * 1000000000LL + mono.tv_nsec;
  if (now < atomic_load(&next_read_ns)) return;
  atomic_store(&next_read_ns, now + 100000000LL);
  const char *path = getenv("CLOCK_SHIM_FILE");
  if (path == NULL) return;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[32];
  long n = (long)syscall(SYS_read, fd, buf, sizeof buf - 1);
  syscall(SYS_close, fd);
  if (n <= 0) return;
  buf[n] = 0;
  atomic_store(&offset_ns, strtoll(buf, NULL, 10) * 1000000000LL);
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
  if (real_clock(clock, ts) != 0) return -1;
  if (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE) {
    refresh();
    long long t = ts->tv_sec * 1000000000LL + ts->tv_nsec + atomic_load(&offset_ns);
    ts->tv_sec = t / 1000000000LL;
    ts->tv_nsec = t % 1000000000LL;
  }
  return 0;
}

int gettimeofday(struct timeval *tv, void *tz) {
  (void)tz;
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = ts.tv_nsec / 1000;
  return 0;
}

time_t time(time_t *out) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
  if (out != NULL) *out = ts.tv_sec;
  return ts.tv_sec;
}
