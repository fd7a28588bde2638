// Run-time checks that mirror compile-time types: a decoded JSON value is `unknown` until a
// check says what it is. `object<T>()` takes one check per field of T, and the compiler holds
// that list to T: a field the type gains, loses or changes is a type error in the checks too.
/** A string. */
export const isString = (value) => typeof value === "string";
/** A finite number (JSON has no other kind). */
export const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
/** `true` or `false`. */
export const isBoolean = (value) => typeof value === "boolean";
/** `null`, or what `check` accepts: a Rust `Option<T>` that serde writes as `null`. */
export function nullable(check) {
    return (value) => value === null || check(value);
}
/**
 * What `check` accepts, or no value at all: a field the type marks optional (`field?: T`, from
 * `#[ts(optional)]` or serde's `skip_serializing_if` with `default`). An absent field passes.
 */
export function optional(check) {
    const optionalCheck = (value) => value === undefined || check(value);
    return Object.assign(optionalCheck, { optional: true });
}
/** An array whose every item `check` accepts. */
export function arrayOf(check) {
    return (value) => Array.isArray(value) && value.every((item) => check(item));
}
/** One of the given literal values (a Rust enum of unit variants, serialized as strings). */
export function oneOf(...values) {
    return (value) => values.includes(value);
}
/** A check for a plain object with exactly the fields of `T`, each checked by its own check. */
export function object(fields, options = {}) {
    const entries = Object.entries(fields);
    const rejectExtra = (options.extraFields ?? "reject") === "reject";
    const problems = (value) => {
        if (typeof value !== "object" || value === null || Array.isArray(value)) {
            return [`expected an object, got ${describe(value)}`];
        }
        const record = value;
        const found = [];
        for (const [name, check] of entries) {
            if (!(name in record) && !check.optional) {
                found.push(`missing field "${name}"`);
            }
            else if (!check(record[name])) {
                found.push(`field "${name}": unexpected ${describe(record[name])}`);
            }
        }
        if (rejectExtra) {
            for (const name of Object.keys(record)) {
                if (!(name in fields))
                    found.push(`unexpected field "${name}"`);
            }
        }
        return found;
    };
    const check = (value) => problems(value).length === 0;
    return Object.assign(check, { problems });
}
function describe(value) {
    if (value === null)
        return "null";
    if (Array.isArray(value))
        return "array";
    if (typeof value === "string")
        return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
    if (typeof value === "number" || typeof value === "boolean")
        return `${typeof value} ${value}`;
    return typeof value;
}
