// Linux's event interfaces, which the toolchain's Glibc module does not
// export: epoll(7) and eventfd(2). Declarations only; they live in libc.
#include <sys/epoll.h>
#include <sys/eventfd.h>
