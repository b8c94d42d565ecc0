#include "bs_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
int bs_release_free_memory(void) { return malloc_trim(0); }
#else
int bs_release_free_memory(void) { return 0; }
#endif
