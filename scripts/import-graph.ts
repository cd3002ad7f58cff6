// Import-cycle check over src/: no file may import itself back through others, and no
// package (a directory directly under src/, or a file at its root) may depend on itself
// through other packages. Run by `npm run check:cycles`, part of `npm run check`.
import madge from 'madge';

/** File → the files it imports, paths relative to the scanned root (as madge reports them). */
export type ImportGraph = Readonly<Record<string, readonly string[]>>;

/** The package a source file belongs to: its first directory, or its own stem at the root. */
export function packageOf(file: string): string {
  const slash = file.indexOf('/');
  return slash === -1 ? file.replace(/\.[^.]+$/, '') : file.slice(0, slash);
}

/** One cycle: the files or packages in it, and for each edge between them one file import that makes it. */
export interface Cycle {
  readonly members: readonly string[];
  readonly edges: readonly { readonly from: string; readonly to: string; readonly via: string }[];
}

/** File cycles: imports grouped by file. */
export function fileCycles(graph: ImportGraph): Cycle[] {
  return cycles(graph, (file) => file);
}

/** Package cycles: imports grouped by `packageOf`, imports inside one package left out. */
export function packageCycles(graph: ImportGraph): Cycle[] {
  return cycles(graph, packageOf);
}

/** Strongly connected components of more than one node (Tarjan), each with its witnessing edges. */
function cycles(graph: ImportGraph, nodeOf: (file: string) => string): Cycle[] {
  const witness = new Map<string, Map<string, string>>();
  for (const [file, imports] of Object.entries(graph)) {
    const from = nodeOf(file);
    for (const target of imports) {
      const to = nodeOf(target);
      if (to === from) continue;
      const out = witness.get(from) ?? new Map<string, string>();
      if (!out.has(to)) out.set(to, `${file} → ${target}`);
      witness.set(from, out);
    }
  }
  const nodes = [...new Set(Object.keys(graph).map(nodeOf))].sort();
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of witness.get(node)?.keys() ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const node of nodes) if (!index.has(node)) visit(node);
  return components
    .sort((a, b) => a[0]!.localeCompare(b[0]!))
    .map((members) => {
      const inside = new Set(members);
      const edges = members.flatMap((from) =>
        [...(witness.get(from) ?? [])]
          .filter(([to]) => inside.has(to))
          .map(([to, via]) => ({ from, to, via })),
      );
      return { members, edges };
    });
}

/** The import graph of a source tree, type-only imports included (a type cycle is a cycle too). */
export async function importGraph(root: string, tsConfig: string): Promise<ImportGraph> {
  const result = await madge(root, {
    fileExtensions: ['ts'],
    tsConfig,
    detectiveOptions: { ts: { skipTypeImports: false } },
  });
  return result.obj();
}
