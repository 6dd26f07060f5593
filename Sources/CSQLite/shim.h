#ifndef SIGILO_CSQLITE_SHIM_H
#define SIGILO_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
