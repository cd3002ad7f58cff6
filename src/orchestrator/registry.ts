import type { Reconciler } from '../core/reconcile.ts';

/** The reconcilers this worker knows, one per resource kind. */
export class ReconcilerRegistry {
  readonly #byKind = new Map<string, Reconciler<unknown>>();

  register<Spec>(reconciler: Reconciler<Spec>): this {
    if (this.#byKind.has(reconciler.kind))
      throw new Error(`a reconciler for ${reconciler.kind} is already registered`);
    this.#byKind.set(reconciler.kind, reconciler);
    return this;
  }

  get(kind: string): Reconciler<unknown> | undefined {
    return this.#byKind.get(kind);
  }

  all(): Reconciler<unknown>[] {
    return [...this.#byKind.values()];
  }
}
