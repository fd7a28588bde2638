/** A type guard: true when `value` is a `T`. */
export type Check<T> = (value: unknown) => value is T;
/** A check per field of `T`: every field named, each check of that field's type. */
export type Fields<T> = {
    readonly [K in keyof T]-?: Check<T[K]>;
};
/** What {@link object} returns: a check that can also say what is wrong. */
export interface ObjectCheck<T> extends Check<T> {
    /** Why `value` is not a `T`, one line per problem; empty when it is one. */
    problems(value: unknown): string[];
}
/** A string. */
export declare const isString: Check<string>;
/** A finite number (JSON has no other kind). */
export declare const isNumber: Check<number>;
/** `true` or `false`. */
export declare const isBoolean: Check<boolean>;
/** `null`, or what `check` accepts: a Rust `Option<T>` that serde writes as `null`. */
export declare function nullable<T>(check: Check<T>): Check<T | null>;
/**
 * What `check` accepts, or no value at all: a field the type marks optional (`field?: T`, from
 * `#[ts(optional)]` or serde's `skip_serializing_if` with `default`). An absent field passes.
 */
export declare function optional<T>(check: Check<T>): Check<T>;
/** An array whose every item `check` accepts. */
export declare function arrayOf<T>(check: Check<T>): Check<T[]>;
/** One of the given literal values (a Rust enum of unit variants, serialized as strings). */
export declare function oneOf<const L extends readonly (string | number | boolean)[]>(...values: L): Check<L[number]>;
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
export declare function object<T>(fields: Fields<T>, options?: ObjectOptions): ObjectCheck<T>;
