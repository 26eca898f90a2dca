//! The frame every page shares: navigation (relative links only, so the UI works behind a
//! proxy under any prefix), style, and the script that refreshes a live page in place.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The application's pages, in the navigation's order (Executors first, as users asked).
pub const TABS: [(&str, &str); 6] = [
    ("executors", "Executors"),
    ("jobs", "Jobs"),
    ("stages", "Stages"),
    ("storage", "Storage"),
    ("environment", "Environment"),
    ("training", "Training"),
];

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#222}
header{background:#1f3b57;color:#fff;padding:.5em 1em;display:flex;gap:1.2em;align-items:baseline;flex-wrap:wrap}
header a{color:#fff;text-decoration:none} header a.on{text-decoration:underline;font-weight:bold}
main{padding:1em 1.5em} table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.92em}
th{background:#eef2f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.RUNNING,.ACTIVE,.alive{color:#1565c0}.SUCCEEDED,.COMPLETE{color:#2e7d32}
.FAILED,.lost{color:#c62828;font-weight:bold}.draining{color:#ef6c00}.exited{color:#777}
#curves{display:flex;flex-wrap:wrap;gap:1em}.chart{flex:1 1 520px;max-width:720px}
.chart svg{width:100%;height:auto}
"#;

/// Replaces `<main>` with a fresh copy every two seconds while the page is live; stops when a
/// fetched copy is no longer live (the application ended).
const REFRESH: &str = r#"
(function(){
  if(!document.body.dataset.live) return;
  var timer=setInterval(function(){
    fetch(location.href,{cache:'no-store'}).then(function(r){return r.ok?r.text():null}).then(function(t){
      if(!t) return;
      var d=new DOMParser().parseFromString(t,'text/html');
      var m=d.querySelector('main'); if(m) document.querySelector('main').replaceWith(m);
      if(!d.body.dataset.live){clearInterval(timer);delete document.body.dataset.live;}
    }).catch(function(){});
  },2000);
})();
"#;

/// Where a page sits, for its relative links.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    /// The application (`None` on the home page).
    pub app: Option<&'a str>,
    /// The tab it belongs to.
    pub tab: &'a str,
    /// Directories below the application's root (`jobs/3` is 1): each adds a `../`.
    pub depth: usize,
}

impl Place<'_> {
    /// The relative path from this page to the application's root.
    pub fn root(&self) -> String {
        "../".repeat(self.depth)
    }

    /// The relative path from this page to the UI's home.
    pub fn home(&self) -> String {
        match self.app {
            Some(_) => format!("{}../../", self.root()),
            None => String::new(),
        }
    }
}

/// A whole page: `title`, the navigation for `place`, and `body` in `<main>`.
pub fn page(title: &str, place: Place<'_>, live: bool, training: bool, body: Markup) -> Markup {
    let root = place.root();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · discnn" }
                style { (PreEscaped(STYLE)) }
            }
            body data-live=[live.then_some("1")] {
                header {
                    a href={ (place.home()) "./" } { b { "discnn" } }
                    @if let Some(app) = place.app {
                        a href={ (root) "./" } class=[(place.tab == "app").then_some("on")] { (app) }
                        @for (tab, name) in TABS {
                            @if tab != "training" || training {
                                a href={ (root) (tab) } class=[(place.tab == tab).then_some("on")] { (name) }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
                script { (PreEscaped(REFRESH)) }
            }
        }
    }
}
