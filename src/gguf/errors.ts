/**
 * Every problem found in a GGUF file is reported as a GgufError naming the file, the field and,
 * where it applies, the byte offset and what was expected, so a user can tell what is wrong
 * with their file without a stack trace.
 */
export class GgufError extends Error {
  readonly file: string;
  readonly field: string;
  readonly offset: number | undefined;

  constructor(file: string, field: string, problem: string, offset?: number) {
    const where = offset === undefined ? "" : ` (at byte ${offset})`;
    super(`${file}: ${field}${where}: ${problem}`);
    this.name = "GgufError";
    this.file = file;
    this.field = field;
    this.offset = offset;
  }
}
