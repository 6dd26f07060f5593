// glibc's allocator settings (mallopt(3)), which the toolchain's Glibc module
// does not export. Declarations only; they live in libc.
#ifdef __linux__
#include <malloc.h>
#endif
