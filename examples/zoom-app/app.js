// The in-client Zoom App: Start and Stop buttons for the meeting's real-time media stream,
// through the Zoom Apps SDK (`zoomSdk`, loaded from appssdk.zoom.us), with the live status.
"use strict";

const $ = (id) => document.getElementById(id);

function show(status) {
  const el = $("status");
  el.textContent = status;
  el.dataset.status = status;
  const running = status === "started" || status === "connecting" || status === "paused";
  $("start").disabled = running;
  $("stop").disabled = !running;
}

function fail(what, e) {
  $("error").textContent = what + ": " + (e && e.message ? e.message : String(e));
}

// getRTMSStatus answers {rtmsStatus: [{rtmsSessionId, status, ...}]}; the newest counts.
function statusOf(answer) {
  const list = (answer && answer.rtmsStatus) || [];
  return list.length ? list[list.length - 1].status : "stopped";
}

async function main() {
  if (typeof zoomSdk === "undefined") {
    fail("not inside Zoom", "open this page as a Zoom App in the Zoom client");
    return;
  }
  try {
    await zoomSdk.config({
      capabilities: ["startRTMS", "stopRTMS", "getRTMSStatus", "onRTMSStatusChange", "getAppContext"],
    });
  } catch (e) {
    fail("Zoom refused the app's capabilities", e);
    return;
  }
  zoomSdk.onRTMSStatusChange((event) => show(event.status));
  try {
    show(statusOf(await zoomSdk.getRTMSStatus()));
  } catch (e) {
    show("stopped");
  }
  $("server-start").disabled = false;
  $("start").addEventListener("click", async () => {
    $("error").textContent = "";
    try {
      show("connecting");
      await zoomSdk.startRTMS();
    } catch (e) {
      show("stopped");
      fail("could not start", e);
    }
  });
  $("stop").addEventListener("click", async () => {
    $("error").textContent = "";
    try {
      await zoomSdk.stopRTMS();
    } catch (e) {
      fail("could not stop", e);
    }
  });
  $("server-start").addEventListener("click", async () => {
    $("error").textContent = "";
    $("server-result").textContent = "asking the host…";
    try {
      const { context } = await zoomSdk.getAppContext();
      const r = await fetch("api/rtms/start", {
        method: "POST",
        headers: { "x-zoom-app-context": context },
      });
      const answer = await r.json();
      if (!r.ok) throw new Error(answer.error || "HTTP " + r.status);
      $("server-result").textContent = "streaming as " + answer.stream_id;
      show("started");
    } catch (e) {
      $("server-result").textContent = "";
      fail("the host could not start the stream", e);
    }
  });
}

main();
