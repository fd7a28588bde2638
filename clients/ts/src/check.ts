// Run-time checks that mirror compile-time types: a decoded JSON value is `unknown` until a
// check says what it is. `object<T>()` takes one check per field of T, and the compiler holds
// that list to T: a field the type gains, loses or changes is a type error in the checks too.

/** A type guard: true when `value` is a `T`. */
export type Check<T> = (value: unknown) => value is T;

/** A check per field of `T`: every field named, each check of that field's type. */
export type Fields<T> = { readonly [K in keyof T]-?: Check<T[K]> };

/** What {@link object} returns: a check that can also say what is wrong. */
export interface ObjectCheck<T> extends Check<T> {
  /** Why `value` is not a `T`, one line per problem; empty when it is one. */
  problems(value: unknown): string[];
}

/** A string. */
export const isString: Check<string> = (value): value is string => typeof value === "string";
/** A finite number (JSON has no other kind). */
export const isNumber: Check<number> = (value): value is number =>
  typeof value === "number" && Number.isFinite(value);
/** `true` or `false`. */
export const isBoolean: Check<boolean> = (value): value is boolean => typeof value === "boolean";

/** `null`, or what `check` accepts: a Rust `Option<T>` that serde writes as `null`. */
export function nullable<T>(check: Check<T>): Check<T | null> {
  return (value): value is T | null => value === null || check(value);
}

/**
 * What `check` accepts, or no value at all: a field the type marks optional (`field?: T`, from
 * `#[ts(optional)]` or serde's `skip_serializing_if` with `default`). An absent field passes.
 */
export function optional<T>(check: Check<T>): Check<T> {
  const optionalCheck = (value: unknown): value is T => value === undefined || check(value);
  return Object.assign(optionalCheck, { optional: true });
}

/** An array whose every item `check` accepts. */
export function arrayOf<T>(check: Check<T>): Check<T[]> {
  return (value): value is T[] => Array.isArray(value) && value.every((item) => check(item));
}

/** One of the given literal values (a Rust enum of unit variants, serialized as strings). */
export function oneOf<const L extends readonly (string | number | boolean)[]>(...values: L): Check<L[number]> {
  return (value): value is L[number] => values.includes(value as L[number]);
}

/** How {@link object} treats a field its type does not name. */
export interface ObjectOptions {
  /**
   * `"reject"` (the default): a field the type does not name is a problem, since it means the
   * generated types and the server have drifted apart. `"allow"`: extra fields are ignored,
   * for a client that must keep working with a newer server.
   */
  readonly extraFields?: "reject" | "allow";
}

/** A check for a plain object with exactly the fields of `T`, each checked by its own check. */
export function object<T>(fields: Fields<T>, options: ObjectOptions = {}): ObjectCheck<T> {
  const entries = Object.entries(fields) as [string, Check<unknown> & { optional?: true }][];
  const rejectExtra = (options.extraFields ?? "reject") === "reject";
  const problems = (value: unknown): string[] => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return [`expected an object, got ${describe(value)}`];
    }
    const record = value as Record<string, unknown>;
    const found: string[] = [];
    for (const [name, check] of entries) {
      if (!(name in record) && !check.optional) {
        found.push(`missing field "${name}"`);
      } else if (!check(record[name])) {
        found.push(`field "${name}": unexpected ${describe(record[name])}`);
      }
    }
    if (rejectExtra) {
      for (const name of Object.keys(record)) {
        if (!(name in fields)) found.push(`unexpected field "${name}"`);
      }
    }
    return found;
  };
  const check = (value: unknown): value is T => problems(value).length === 0;
  return Object.assign(check, { problems });
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "string") return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${value}`;
  return typeof value;
}
