# edgerec — the two commands a newcomer needs: `make dev` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

WASM_OUT := target/wasm32-unknown-unknown/release/edgerec_wasm.wasm

.PHONY: dev test tools lint unit wasm wasm-node wasm-test bench clean

## dev: run the demo (today: the CLI plays a shopper through the engine, with the "why")
dev: tools
	cargo run --release -q -p edgerec-cli -- demo

## test: every test (lint, native unit/property/conformance, wasm build, wasm conformance)
test: tools lint unit wasm-test

tools:
	@scripts/ensure-tools.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings

unit:
	cargo test --workspace -q

# The core builds for wasm32 on its own (no platform types), and so do the bindings.
wasm:
	cargo build -q -p edgerec --target wasm32-unknown-unknown
	cargo build -q -p edgerec-wasm --release --target wasm32-unknown-unknown

wasm-node: wasm
	wasm-bindgen --target nodejs --out-dir build/wasm-node $(WASM_OUT)
	echo '{"type":"commonjs"}' > build/wasm-node/package.json

wasm-test: wasm-node
	cargo build -q --release -p edgerec-cli
	node --test wasm/test/

## bench: criterion benches, per-call latency native vs wasm (same workload, same run)
bench: tools wasm-node
	cargo bench -q --bench decide
	@echo "--- per-call latency, same workload, same run ---"
	@cargo bench -q --bench latency 2>/dev/null | tail -1
	@node wasm/bench.mjs
	@cargo run -q --release --example workload_info

clean:
	rm -rf build target
