import { fileURLToPath } from 'node:url';

/**
 * PowerShell source as the tree-sitter PowerShell grammar reads it (no PowerShell needed): its syntax errors,
 * and the text of its tokens outside strings and comments.
 */
export async function powershellTree(source: string): Promise<{ errors: string[]; codeTokens: string[] }> {
  const { Language, Parser } = await import('web-tree-sitter');
  await Parser.init();
  const wasm = fileURLToPath(import.meta.resolve('tree-sitter-powershell/tree-sitter-powershell.wasm'));
  const parser = new Parser();
  parser.setLanguage(await Language.load(wasm));
  const tree = parser.parse(source)!;
  const errors: string[] = [];
  const codeTokens: string[] = [];
  const walk = (n: NonNullable<typeof tree>['rootNode'], code: boolean) => {
    if (n.isError || n.isMissing)
      errors.push(
        `line ${n.startPosition.row + 1}: ${n.isMissing ? `missing ${n.type}` : n.text.slice(0, 80)}`,
      );
    const inCode = code && !/string|comment/.test(n.type);
    if (inCode && n.childCount === 0) codeTokens.push(n.text);
    for (const c of n.children) if (c) walk(c, inCode);
  };
  walk(tree.rootNode, true);
  tree.delete();
  parser.delete();
  return { errors, codeTokens };
}

export async function powershellSyntaxErrors(source: string): Promise<string[]> {
  return (await powershellTree(source)).errors;
}

/** Operators of PowerShell 7 (`&&`, `||`, `??`, `?.`) in code — not in strings or comments: 5.1 has none. */
export async function powershell7Operators(source: string): Promise<string[]> {
  return (await powershellTree(source)).codeTokens.filter((l) => /&&|\|\||\?\?|\?\./.test(l));
}
