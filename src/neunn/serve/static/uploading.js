// Uploading files, for both pages: choosing or dropping them, and sending them in requests within the limits.

async function isZipFile(file) {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  return head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5);
}

/** Requests within ``limits`` (the model card's), in the files' order: each zip alone, images grouped by count and
 *  bytes; a file too large for any request becomes a group of its own, with an error, that is never sent. */
export async function uploadBatches(files, limits) {
  const { max_files: maxFiles, max_request_bytes: maxBytes } = limits;
  const groups = [];
  let current = [], bytes = 0;
  const flush = () => { if (current.length) groups.push({ files: current }); current = []; bytes = 0; };
  for (const file of files) {
    const alone = file.size > maxBytes * 0.9 ? "too large for one request" : (await isZipFile(file)) ? null : undefined;
    if (alone !== undefined) { flush(); groups.push({ files: [file], error: alone }); continue; }
    if (current.length >= Math.min(maxFiles, 64) || bytes + file.size > maxBytes * 0.8) flush();
    current.push(file); bytes += file.size;
  }
  flush();
  return groups;
}

/** Send ``files`` in requests within ``limits``, in order: ``send(files)`` for each request, ``refuse(file, reason)`` for
 *  a file too large for any; ``progress`` says which files are on their way, and ``after()`` runs after each request
 *  (false stops the rest, e.g. when the page has moved on). Whether every request was sent. */
export async function sendInBatches(files, limits, { progress, send, refuse, after }) {
  let sent = 0;
  for (const group of await uploadBatches(files, limits)) {
    progress.textContent = `Classifying ${sent + 1}–${sent + group.files.length} of ${files.length} file(s)…`;
    if (group.error) refuse(group.files[0], group.error);
    else await send(group.files);
    sent += group.files.length;
    if (after() === false) return false;
  }
  return true;
}

/** Files chosen with ``input`` or dropped on ``zone`` (which also opens the chooser with Enter or Space) go to
 *  ``addFiles``. */
export function wireFileDrop(input, zone, addFiles) {
  input.addEventListener("change", () => { addFiles(input.files).then(() => { input.value = ""; }); });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
}
