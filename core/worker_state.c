#include "worker_state.h"

struct worker W;
