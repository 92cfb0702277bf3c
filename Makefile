# luaproxy — build, test, run, bench.
#
#   make                 build/luaproxy
#   make run             install deps, build, serve examples/kvstore.lua on 127.0.0.1:8080
#                        (RUN_FLAGS='-l 127.0.0.1:9090' adds options; RUN_FLAGS=--check only loads it)
#   make test            install deps, build, run every suite; ends with "N passed, M failed"
#   make test SANITIZE=1 the same with AddressSanitizer + UBSan (also: make test-asan)
#   make bench           benchmarks against nginx and HAProxy: every performance target, PASS/MISS
#   make bench-callgrind instructions per request (proxied and local paths) under callgrind
#   make bench-profile   perf and syscall profile per request (docs/performance.md explains it)
#   make bench-tls-profile  where TLS time goes (perf, grouped), luaproxy against nginx
#   make check-tls       testssl.sh against an HTTPS listener: fails on any HIGH or CRITICAL finding
#   make soak            mixed traffic for SOAK_SECONDS (60), then descriptor and memory checks
#   make fuzz            libFuzzer targets, FUZZ_SECONDS each (tests/fuzz/fuzz.mk)
#   make install PREFIX=/usr/local

PREFIX   ?= /usr/local
SANITIZE ?=
SOAK_SECONDS ?= 60
LLHTTP_INC := /usr/share/include/llhttp
LLHTTP_SRC := /usr/share/llhttp

# The binary is linked with link-time optimization: the proxy wing and the
# Lua side are split into files by concern, and LTO inlines across them as
# the compiler did when they were one file (about 6 % of a proxied request's
# instructions). Objects are "fat", so the unit tests link them without it
# (-fno-lto: quick links). Warnings found at link time fail the build too.
ifeq ($(SANITIZE),1)
BUILD    := build/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LTO      ?=
else
BUILD    := build
SANFLAGS :=
LTO      ?= -flto=auto -ffat-lto-objects
endif

CC       ?= cc
OPT      ?= -O2
RUN_FLAGS ?=
# Recursive (=) on purpose: pkg-config runs only in recipes, so after the
# dependency step below has installed luajit, pcre2 and check on a fresh
# machine. The Lua side's libraries are LuaJIT, PCRE2 (proxy.re) and c-ares
# (names for the scripts' sockets): every link of lua/ objects needs them.
LUA_CFLAGS   = $(shell pkg-config --cflags luajit libpcre2-8 libcares openssl)
LUA_LIBS     = $(shell pkg-config --libs luajit libpcre2-8 libcares openssl)
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS   += -std=gnu11 -D_GNU_SOURCE $(OPT) -g $(WARN) $(SANFLAGS) -Icore -Ilua -I$(LLHTTP_INC) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   += -lpthread -lm -ldl

CORE_SRC := $(wildcard core/*.c core/proxy/*.c)
LUA_SRC  := $(wildcard lua/*.c)
APP_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(CORE_SRC) $(LUA_SRC))
LIB_OBJ  := $(filter-out $(BUILD)/core/main.o,$(APP_OBJ))
LLHTTP_OBJ := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPER_BIN := $(patsubst tests/helpers/%.c,$(BUILD)/helpers/%,$(HELPER_SRC))

.PHONY: all deps run test test-asan unit integration bench bench-callgrind bench-profile bench-tls-profile soak clean install format fuzz
all: $(BUILD)/luaproxy

# The dependency step must finish before make looks at anything it installs:
# the llhttp sources are prerequisites of pattern rules, and make decides
# that a rule does not apply ("No rule to make target") while it plans the
# build, long before an order-only prerequisite would have run. So the step
# is an included makefile: GNU make first remakes $(DEPS_MK) (running
# scripts/deps.sh, which installs only what is missing), then starts over and
# reads this file again on a machine that has everything. Once it exists,
# an up-to-date tree costs nothing. clean and format need no dependencies.
DEPS_MK := build/.deps.mk
ifneq ($(filter-out clean format,$(or $(MAKECMDGOALS),all)),)
include $(DEPS_MK)
endif
$(DEPS_MK): scripts/deps.sh
	@bash scripts/deps.sh
	@mkdir -p $(dir $@)
	@echo '# scripts/deps.sh succeeded; the Makefile includes this file so that it runs first.' >$@
deps: $(DEPS_MK)

$(BUILD)/luaproxy: $(APP_OBJ) $(LLHTTP_OBJ)
	$(CC) $(OPT) $(LTO) $(WARN) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) $(LDLIBS)

$(BUILD)/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LTO) $(LUA_CFLAGS) -c -o $@ $<
$(BUILD)/lua/%.o: lua/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LTO) $(LUA_CFLAGS) -c -o $@ $<
# llhttp is generated code from the node-llhttp package: compiled, not copied.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(OPT) $(LTO) -g $(SANFLAGS) -w -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fno-lto $(LUA_CFLAGS) $(CHECK_CFLAGS) -o $@ $< $(LIB_OBJ) $(LLHTTP_OBJ) \
	    $(LDFLAGS) $(CHECK_LIBS) $(LUA_LIBS) $(LDLIBS)
$(BUILD)/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

test: $(BUILD)/luaproxy $(UNIT_BIN) $(HELPER_BIN)
	@BUILD=$(BUILD) LUAPROXY=$(BUILD)/luaproxy bash tests/run.sh
test-asan:
	@$(MAKE) --no-print-directory test SANITIZE=1
unit: $(UNIT_BIN)
	@BUILD=$(BUILD) ONLY=unit bash tests/run.sh
integration: $(BUILD)/luaproxy $(HELPER_BIN)
	@BUILD=$(BUILD) LUAPROXY=$(BUILD)/luaproxy ONLY=integration bash tests/run.sh

run: $(BUILD)/luaproxy
	$(BUILD)/luaproxy $(RUN_FLAGS) examples/kvstore.lua

bench: $(BUILD)/luaproxy
	@bash scripts/deps.sh bench
	@LUAPROXY=$(BUILD)/luaproxy bash scripts/bench.sh

# Instruction counts do not move with machine noise: the figure to compare
# before and after a change. Writes build/bench/callgrind.md.
bench-callgrind: $(BUILD)/luaproxy
	@bash scripts/deps.sh callgrind
	@python3 scripts/bench/callgrind.py $(BUILD)/luaproxy build/bench

# perf stat/record, syscall tracepoints and strace on loaded workers; writes
# build/bench/profile.md. Needs perf to be allowed (perf_event_paranoid).
bench-profile: $(BUILD)/luaproxy
	@bash scripts/deps.sh profile
	@python3 scripts/bench/perfprofile.py $(BUILD)/luaproxy build/bench

# perf on the workers of luaproxy and nginx terminating TLS: handshakes,
# small requests, 1 MiB bodies; writes build/bench/tls-profile.md.
bench-tls-profile: $(BUILD)/luaproxy
	@bash scripts/deps.sh profile
	@python3 scripts/bench/tls_profile.py $(BUILD)/luaproxy build/bench

# testssl.sh --fast (about a minute) against a luaproxy TLS listener with
# the tests' certificate; scripts/check_tls.py judges its JSON findings.
.PHONY: check-tls
check-tls: $(BUILD)/luaproxy
	@bash scripts/deps.sh tls
	@LUAPROXY=$(BUILD)/luaproxy python3 scripts/check_tls.py

soak: $(BUILD)/luaproxy
	@LUAPROXY=$(BUILD)/luaproxy SOAK_SECONDS=$(SOAK_SECONDS) python3 tests/soak/soak.py

install: $(BUILD)/luaproxy
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/luaproxy/examples
	install -m 755 $(BUILD)/luaproxy $(DESTDIR)$(PREFIX)/bin/luaproxy
	install -m 644 examples/*.lua $(DESTDIR)$(PREFIX)/share/luaproxy/examples/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 docs/luaproxy.1 $(DESTDIR)$(PREFIX)/share/man/man1/luaproxy.1

format:
	clang-format -i core/*.[ch] core/proxy/*.[ch] lua/*.[ch] tests/unit/*.c tests/helpers/*.c

clean:
	rm -rf build

-include $(APP_OBJ:.o=.d) $(UNIT_BIN:=.d)
include tests/fuzz/fuzz.mk
