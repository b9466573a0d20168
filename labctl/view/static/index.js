// The index of `labctl view`: every session under the sessions directory, newest first,
// refreshed every five seconds; tick several to open them side by side.
"use strict";

const chosen = new Set();

function openSelected() {
  location.href = "/view?" + [...chosen].map((s) => "s=" + encodeURIComponent(s)).join("&");
}

async function refresh() {
  try {
    const r = await fetch("/api/sessions", { cache: "no-store" });
    const body = await r.json();
    document.getElementById("root").textContent = `in ${body.root}`;
    const tbody = document.querySelector("#index tbody");
    tbody.replaceChildren();
    for (const s of body.sessions) {
      const tr = document.createElement("tr");
      tr.dataset.session = s.id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = chosen.has(s.id);
      box.onchange = () => {
        if (box.checked) chosen.add(s.id); else chosen.delete(s.id);
        document.getElementById("open").disabled = chosen.size === 0;
      };
      const link = document.createElement("a");
      link.href = "/view?s=" + encodeURIComponent(s.id);
      link.textContent = s.id;
      const started = s.start_time ? new Date(s.start_time * 1000).toISOString().replace("T", " ").slice(0, 19) : "-";
      const status = document.createElement("span");
      status.className = "status status-" + s.status;
      status.textContent = s.status;
      for (const c of [box, link, s.command, started, status, s.headline || s.reason]) {
        const td = document.createElement("td");
        if (typeof c === "string") td.textContent = c; else td.appendChild(c);
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    const newest = document.getElementById("newest");
    if (body.sessions.length) {
      newest.href = "/view?s=" + encodeURIComponent(body.sessions[0].id);
      newest.textContent = "open the newest: " + body.sessions[0].id;
    } else {
      newest.textContent = "no sessions yet";
    }
  } catch (err) {
    document.getElementById("root").textContent = "server not reachable: " + err;
  }
  setTimeout(refresh, 5000);
}

document.getElementById("open").onclick = openSelected;
refresh();
