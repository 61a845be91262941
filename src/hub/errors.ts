/** A model could not be found, fetched or verified; the message says which and why, in one line. */
export class HubError extends Error {
  override name = "HubError";
}
