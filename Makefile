# Cairn — the one build entry.
#   make          release build into build/rel
#   make test     install deps, build with ASan+UBSan into build/asan, run every test
#   make demo     install deps, release build, run a single-node demo in the foreground
#   make bench    install deps, release build, run the benchmarks (ratios vs peers)
MODE   ?= rel
BUILD  ?= build/$(MODE)
CC     ?= cc

PKGS   := libuv liburing libisal rocksdb
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -g -Wall -Wextra -Werror -Wshadow \
	-Wno-missing-field-initializers -Iinclude -Ilib $(PKG_CFLAGS) -MMD -MP
ifeq ($(MODE),asan)
CFLAGS_MODE := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_MODE := -fsanitize=address,undefined
else
CFLAGS_MODE := -O2
LDFLAGS_MODE :=
endif
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS_MODE) $(CFLAGS)
ALL_LDLIBS := $(PKG_LIBS) -lpthread $(LDLIBS)

# Everything but the main()s goes into one static library the tests link.
LIB_SRCS := $(wildcard lib/*.c) $(wildcard sds/*.c) $(wildcard sds/nbd/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIBCAIRN := $(BUILD)/libcairn.a

PROGS := $(BUILD)/bin/cairnd $(BUILD)/bin/cairn-sds
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/%)

.PHONY: all deps test demo bench clean format
all: $(PROGS) $(UNIT_BINS) $(TOOL_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBCAIRN): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/cairnd: $(BUILD)/obj/controller-vm/cairnd.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/bin/cairn-sds: $(BUILD)/obj/sds/tools/cairn-sds.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/tools/%.o $(LIBCAIRN)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS) -lnbd

deps:
	@scripts/deps.sh

test: deps
	$(MAKE) MODE=asan all
	tests/run.sh build/asan

demo: deps
	$(MAKE) MODE=rel all
	scripts/demo.sh build/rel

bench: deps
	$(MAKE) MODE=rel all
	bench/run.sh build/rel

format:
	clang-format -i $(wildcard */*.[ch] */*/*.[ch])

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
