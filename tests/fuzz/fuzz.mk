# Fuzzing (included from the Makefile): libFuzzer targets over the real
# worker code, built with clang into build/fuzz/.
#
#   make fuzz                    builds, then runs each target for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_TARGETS=backend FUZZ_SECONDS=600 FUZZ_FLAGS='-jobs=1'
#   make fuzz-build              builds build/fuzz/fuzz_client and build/fuzz/fuzz_backend
#
# Each run starts from the committed seeds (tests/fuzz/corpus/<target>) and
# the inputs kept by earlier runs (build/fuzz/corpus/<target>, where new
# ones go), stops at the first crash (the input lands in build/fuzz/) and
# then fails. Replaying a crasher: build/fuzz/fuzz_<target> FILE
# (FUZZ_VERBOSE=1 for the worker's log).

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= client backend
FUZZ_FLAGS   ?=
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=gnu11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                -Icore -Ilua -I$(LLHTTP_INC) -DFUZZ_DIR='"$(CURDIR)/tests/fuzz"' $(LUA_CFLAGS)
FUZZ_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(filter-out core/main.c,$(CORE_SRC)) $(LUA_SRC) \
              tests/fuzz/harness.c) \
            $(FUZZ_BUILD)/llhttp/llhttp.o $(FUZZ_BUILD)/llhttp/api.o $(FUZZ_BUILD)/llhttp/http.o

.PHONY: fuzz-build
.SECONDARY: $(FUZZ_OBJ) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.o)
fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g -w -DLLHTTP_STRICT_MODE=1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -I$(LLHTTP_INC) \
	    -c -o $@ $<
$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LUA_LIBS) $(LDLIBS)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t || exit 1; \
	    echo "== fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
	        -dict=tests/fuzz/http.dict -artifact_prefix=$(FUZZ_BUILD)/$$t- $(FUZZ_FLAGS) \
	        $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || { echo "fuzz_$$t: FAILED"; exit 1; }; \
	done

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.d)

# make fuzz-coverage: line and branch coverage of core/ and lua/ reached by
# the committed seeds plus the inputs kept in build/fuzz/corpus/ (a build
# with clang's source-based coverage, no sanitizers, in build/fuzz-cov/).
FUZZ_COV := build/fuzz-cov
FUZZ_COV_OBJ := $(patsubst $(FUZZ_BUILD)/%,$(FUZZ_COV)/%,$(FUZZ_OBJ))

.PHONY: fuzz-coverage
.SECONDARY: $(FUZZ_COV_OBJ) $(FUZZ_TARGETS:%=$(FUZZ_COV)/tests/fuzz/fuzz_%.o)
$(FUZZ_COV)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g -w -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -c -o $@ $<
$(FUZZ_COV)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(subst $(FUZZ_SAN),,$(FUZZ_CFLAGS)) -fprofile-instr-generate -fcoverage-mapping -MMD -MP \
	    -c -o $@ $<
$(FUZZ_COV)/fuzz_%: $(FUZZ_COV)/tests/fuzz/fuzz_%.o $(FUZZ_COV_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer -fprofile-instr-generate -o $@ $^ $(LUA_LIBS) $(LDLIBS)

fuzz-coverage: $(FUZZ_TARGETS:%=$(FUZZ_COV)/fuzz_%)
	@rm -f $(FUZZ_COV)/*.profraw
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    LLVM_PROFILE_FILE=$(FUZZ_COV)/$$t.profraw $(FUZZ_COV)/fuzz_$$t -runs=0 \
	        $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t 2>&1 | grep -E '^#[0-9]+[[:space:]]+DONE' || true; \
	done
	@llvm-profdata merge -o $(FUZZ_COV)/all.profdata $(FUZZ_COV)/*.profraw
	@llvm-cov report $(FUZZ_COV)/fuzz_client $(patsubst %,-object $(FUZZ_COV)/fuzz_%,$(filter-out client,$(FUZZ_TARGETS))) \
	    -instr-profile=$(FUZZ_COV)/all.profdata $(CORE_SRC) $(LUA_SRC)

-include $(FUZZ_COV_OBJ:.o=.d)
