# Cairn — the one build entry.
#   make          release build into build/rel
#   make test     install deps, build with ASan+UBSan into build/asan, run every test
#   make demo     install deps, release build, run a single-node demo in the foreground
#   make bench    install deps, release build, run the benchmarks (ratios vs peers)
MODE   ?= rel
BUILD  ?= build/$(MODE)
CC     ?= cc

PKGS   := libuv liburing libisal rocksdb jansson openssl libh2o libcurl raft
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wshadow \
	-Wno-missing-field-initializers -Iinclude -Ilib $(PKG_CFLAGS) -MMD -MP
ifeq ($(MODE),asan)
CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_MODE := -fsanitize=address,undefined
else ifeq ($(MODE),fuzz)
# libFuzzer targets: everything built by clang with coverage hooks.
CC := clang
CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
LDFLAGS_MODE := -fsanitize=fuzzer,address,undefined
else
CFLAGS_MODE := -O2
LDFLAGS_MODE :=
endif
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS_MODE) $(CFLAGS)
ALL_LDLIBS := $(PKG_LIBS) -lpthread -lm $(LDLIBS)

# Everything but the main()s goes into one static library the tests link.
# Library sources: every .c in these folders (main()s live elsewhere).
LIB_DIRS := lib sds sds/nbd replication controller-vm/pki controller-vm/api controller-vm/cluster controller-vm/node vaai/scsi vaai/iscsi hypervisor/vhost hypervisor/hostd
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIBCAIRN := $(BUILD)/libcairn.a

PROGS := $(BUILD)/bin/cairnd $(BUILD)/bin/cairn-sds $(BUILD)/bin/cairn \
	$(patsubst %.c,$(BUILD)/bin/%,$(notdir $(wildcard hypervisor/cmd/*.c)))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# tests/tools/lib_*.c are helpers linked into the tools that use them.
TOOL_LIB_SRCS := $(wildcard tests/tools/lib_*.c)
TOOL_SRCS := $(filter-out $(TOOL_LIB_SRCS),$(wildcard tests/tools/*.c))
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all deps test demo bench clean format fuzzers
ifeq ($(MODE),fuzz)
all: fuzzers
else
all: $(PROGS) $(UNIT_BINS) $(TOOL_BINS)
endif
fuzzers: $(FUZZ_BINS)

$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

# Extra programs: one main() per file in hypervisor/cmd/.
$(BUILD)/bin/%: $(BUILD)/obj/hypervisor/cmd/%.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The OpenAPI document is embedded with .incbin.
$(BUILD)/obj/controller-vm/api/openapi.o: controller-vm/api/openapi.json

$(LIBCAIRN): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/cairnd: $(BUILD)/obj/controller-vm/cairnd.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/bin/cairn-sds: $(BUILD)/obj/sds/tools/cairn-sds.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/bin/cairn: $(BUILD)/obj/controller-vm/cli/cairn.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/tools/%.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS) -lnbd -liscsi

# Test helpers (tests/unit/ files not named test_*.c, tests/tools/lib_*.c),
# added to the link of the binaries that use them.
$(BUILD)/tests/test_sds $(BUILD)/tests/test_scsi: \
	$(BUILD)/obj/tests/unit/pool_fixture.o
$(BUILD)/tests/nbd_bad_input $(BUILD)/tests/iscsi_bad_input: \
	$(BUILD)/obj/tests/tools/lib_check.o $(BUILD)/obj/tests/tools/lib_rawsock.o

deps:
	@scripts/deps.sh

test: deps
	$(MAKE) MODE=asan all
	$(MAKE) MODE=fuzz fuzzers
	tests/run.sh build/asan

demo: deps
	$(MAKE) MODE=rel all
	scripts/demo.sh build/rel

bench: deps
	$(MAKE) MODE=rel all
	bench/all.sh build/rel

format:
	clang-format -i $(wildcard */*.[ch] */*/*.[ch])

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
