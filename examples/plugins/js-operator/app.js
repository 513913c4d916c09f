// An evolve curation operator in JavaScript, built as a wasm component with componentize-js.
//
// `add-constraint` is the Rust example (examples/plugins/wasm-operator) written again in
// JavaScript: when the judge finds the base model as good as the teacher on a simple prompt
// ("a red circle"), it proposes the prompt with one constraint appended ("a red circle to the
// left of a blue square"), Evol-Instruct's "add constraints".
//
// Build (see build.sh):
//   componentize-js app.js --wit ../../../sdk/wit --world-name operator-plugin --disable http fetch-event -o add-constraint.wasm
//
// WIT to JavaScript: interfaces are exported objects, records are objects with camelCase
// fields, variants are { tag, val }, enums are strings, u64 is a BigInt, and a `result`'s
// error is thrown.

const SCHEMA = {
  type: "object",
  properties: {
    constraints: { type: "array", items: { type: "string" }, minItems: 1 },
    rate: { type: "number", minimum: 0, maximum: 1, default: 0.5 },
    applies_to: { type: "array", items: { type: "string" }, default: [] },
    unless_contains: { type: "array", items: { type: "string" }, default: [] },
  },
  required: ["constraints"],
  additionalProperties: false,
};

// This instance's config (one component instance is one plugin instance).
let config = null;

// SplitMix64 over BigInt: the same draws for the same sample seed, on every run.
function* draws(seed) {
  const mask = (1n << 64n) - 1n;
  let state = BigInt.asUintN(64, seed);
  for (;;) {
    state = (state + 0x9e3779b97f4a7c15n) & mask;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
    yield Number((z ^ (z >> 31n)) >> 11n) / 2 ** 53;
  }
}

export const operator = {
  info() {
    return {
      name: "add-constraint-js",
      version: "0.1.0",
      description: "Evol-Instruct-style in-depth evolving, in JavaScript: adds a constraint to prompts the base model has mastered.",
      configSchema: JSON.stringify(SCHEMA),
    };
  },

  init(json, _ctx) {
    const parsed = JSON.parse(json);
    if (parsed.constraints.some((c) => c.trim() === "")) {
      throw { tag: "invalid-config", val: "constraints must not be empty strings" };
    }
    config = { rate: 0.5, applies_to: [], unless_contains: [], ...parsed };
  },

  decide(sample) {
    if (sample.outcome !== "base-as-good") return [];
    const prompt = sample.prompt;
    const starts = config.applies_to.length === 0 || config.applies_to.some((p) => prompt.startsWith(p));
    if (!starts || config.unless_contains.some((c) => prompt.includes(c))) return [];
    const draw = draws(sample.seed);
    if (draw.next().value >= config.rate) return [];
    const constraint = config.constraints[Math.floor(draw.next().value * config.constraints.length)];
    return [{ tag: "propose", val: `${prompt.trimEnd()} ${constraint.trim()}` }];
  },
};
