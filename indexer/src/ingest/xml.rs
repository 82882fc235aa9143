//! A small streaming XML reader for the XML formats (Pascal VOC, CVAT): the root element's
//! children are read one at a time as bounded [`Element`] trees, so a large CVAT file is never
//! held whole in memory.

use std::io::BufRead;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, XmlVersion};

/// Deepest nesting accepted inside one child of the root.
const MAX_DEPTH: usize = 32;
/// Most nodes (elements) in one child of the root.
const MAX_NODES: usize = 200_000;
/// Most bytes of text in one child of the root.
const MAX_TEXT: usize = 16 * 1024 * 1024;

/// One element: name, attributes, child elements and its own text.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child named `name`, when not empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }
}

/// Reads the children of a document's root element one by one.
pub(crate) struct XmlStream<R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    done: bool,
    /// Most nodes in one child of the root ([`MAX_NODES`] unless set for a test).
    max_nodes: usize,
}

/// One child of the root: read whole, or over the limits and skipped to its end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Child {
    Read(Element),
    /// The child (its name and attributes, no children) and which limit it is over.
    Skipped(Element, String),
}

fn start(e: &BytesStart<'_>) -> Result<Element, String> {
    let name = e.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| format!("bad attribute in <{name}>: {err}"))?;
        let key = a.key.as_ref().to_owned();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| format!("bad attribute {key:?} in <{name}>: {err}"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

impl<R: BufRead> XmlStream<R> {
    /// Starts reading `input` and returns the root element (without children).
    ///
    /// # Errors
    /// A reason when no root element can be read.
    pub fn open(input: R) -> Result<(Self, Element), String> {
        let mut reader = Reader::from_reader(input);
        reader.config_mut().check_end_names = true;
        let mut buf = Vec::new();
        let (root, done) = loop {
            buf.clear();
            let ev = reader
                .read_event_into(&mut buf)
                .map_err(|e| format!("not XML: {e}"))?;
            match ev {
                Event::Start(e) => break (start(&e)?, false),
                Event::Empty(e) => break (start(&e)?, true),
                Event::Text(t) if t.xml10_content().trim().is_empty() => {}
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Eof => return Err("no XML element in the file".into()),
                _ => return Err("not XML: text before the first element".into()),
            }
        };
        Ok((
            Self {
                reader,
                buf,
                done,
                max_nodes: MAX_NODES,
            },
            root,
        ))
    }

    /// The same stream with a lower bound on the nodes of one child (tests of what happens
    /// beyond it need not build 200,000 elements).
    #[cfg(test)]
    pub fn with_max_nodes(mut self, max_nodes: usize) -> Self {
        self.max_nodes = max_nodes;
        self
    }

    /// The next child element of the root, whole; `None` after the root's end.
    ///
    /// # Errors
    /// A reason when the XML breaks (what was returned before stays valid) or a child is larger
    /// than the limits (the stream goes on after it).
    pub fn next_child(&mut self) -> Result<Option<Element>, String> {
        match self.next_item()? {
            None => Ok(None),
            Some(Child::Read(el)) => Ok(Some(el)),
            Some(Child::Skipped(_, reason)) => Err(reason),
        }
    }

    /// The next child of the root: whole, or, when it is nested deeper than [`MAX_DEPTH`], has
    /// more than [`MAX_NODES`] elements or [`MAX_TEXT`] bytes of text, skipped to its end (the
    /// next call reads the child after it); `None` after the root's end.
    ///
    /// # Errors
    /// A reason when the XML breaks; what was returned before stays valid.
    pub fn next_item(&mut self) -> Result<Option<Child>, String> {
        if self.done {
            return Ok(None);
        }
        let mut stack: Vec<Element> = Vec::new();
        let mut nodes = 0usize;
        let mut text_bytes = 0usize;
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf).map_err(|e| {
                format!(
                    "XML breaks near byte {}: {e}",
                    self.reader.buffer_position()
                )
            })?;
            let mut push_text = |stack: &mut Vec<Element>, t: &str| -> Option<String> {
                let top = stack.last_mut()?;
                text_bytes += t.len();
                if text_bytes > MAX_TEXT {
                    return Some(format!("more than {MAX_TEXT} bytes of text"));
                }
                top.text.push_str(t);
                None
            };
            // Over a limit: the reason, and the element just started (still open) if any.
            let over: Option<(String, Option<Element>)> = match ev {
                Event::Start(e) => {
                    nodes += 1;
                    let el = start(&e)?;
                    if stack.len() >= MAX_DEPTH {
                        Some((format!("nested deeper than {MAX_DEPTH}"), Some(el)))
                    } else if nodes > self.max_nodes {
                        let n = self.max_nodes;
                        Some((format!("more than {n} elements"), Some(el)))
                    } else {
                        stack.push(el);
                        None
                    }
                }
                Event::Empty(e) => {
                    nodes += 1;
                    let el = start(&e)?;
                    if nodes > self.max_nodes && !stack.is_empty() {
                        Some((format!("more than {} elements", self.max_nodes), None))
                    } else {
                        match stack.last_mut() {
                            Some(top) => top.children.push(el),
                            None => return Ok(Some(Child::Read(el))),
                        }
                        None
                    }
                }
                Event::End(_) => match stack.pop() {
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                    Some(el) => match stack.last_mut() {
                        Some(top) => {
                            top.children.push(el);
                            None
                        }
                        None => return Ok(Some(Child::Read(el))),
                    },
                },
                Event::Text(t) => push_text(&mut stack, &t.xml10_content()).map(|r| (r, None)),
                Event::CData(t) => push_text(&mut stack, &t.xml10_content()).map(|r| (r, None)),
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => {
                            let name = r.xml10_content();
                            resolve_predefined_entity(&name)
                                .map_or_else(|| format!("&{name};"), str::to_owned)
                        }
                    };
                    push_text(&mut stack, &resolved).map(|r| (r, None))
                }
                Event::Eof => {
                    return Err("the XML ends before its root element is closed".into());
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => None,
            };
            if let Some((reason, opened)) = over {
                stack.extend(opened);
                return self.skip(stack, reason).map(Some);
            }
        }
    }

    /// Reads past the end of each element of `open` (outermost first), innermost first: the
    /// child of the root they are in is skipped whole.
    fn skip(&mut self, open: Vec<Element>, reason: String) -> Result<Child, String> {
        for el in open.iter().rev() {
            self.buf.clear();
            self.reader
                .read_to_end_into(QName(&el.name), &mut self.buf)
                .map_err(|e| {
                    format!(
                        "XML breaks near byte {}: {e}",
                        self.reader.buffer_position()
                    )
                })?;
        }
        let mut child = open.into_iter().next().unwrap_or_default();
        child.children.clear();
        child.text.clear();
        Ok(Child::Skipped(child, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_read_one_at_a_time_with_text_and_entities() {
        let xml = "<?xml version='1.0'?><r a='1'><x k='&lt;v&gt;'>A &amp; B&#33;<y/></x>\
                   <![CDATA[ignored]]><z>t</z></r>";
        let (mut s, root) = XmlStream::open(xml.as_bytes()).unwrap();
        assert_eq!((root.name.as_str(), root.attr("a")), ("r", Some("1")));
        let x = s.next_child().unwrap().unwrap();
        assert_eq!(x.attr("k"), Some("<v>"));
        assert_eq!(x.text, "A & B!");
        assert_eq!(x.children[0].name, "y");
        assert_eq!(s.next_child().unwrap().unwrap().text, "t");
        assert_eq!(s.next_child().unwrap(), None);
        assert_eq!(s.next_child().unwrap(), None);
    }

    #[test]
    fn broken_xml_is_an_error_after_what_was_read() {
        let (mut s, _) = XmlStream::open("<r><a/><b><c></b></r>".as_bytes()).unwrap();
        assert!(s.next_child().unwrap().is_some());
        assert!(s.next_child().is_err());
        assert!(XmlStream::open("garbage".as_bytes()).is_err());
        assert!(XmlStream::open("".as_bytes()).is_err());
        let deep = format!("<r>{}</r>", "<a>".repeat(40) + &"</a>".repeat(40));
        let (mut s, _) = XmlStream::open(deep.as_bytes()).unwrap();
        assert!(s.next_child().unwrap_err().contains("nested"));
    }

    /// A child over a limit is skipped to its end, named, and the children after it are read.
    #[test]
    fn a_child_over_the_limits_is_skipped_and_the_next_is_read() {
        let big = "<r><t id='1'><a><b/><b/><b>x</b></a><b/></t><i n='2'/><j><k/></j></r>";
        let (s, _) = XmlStream::open(big.as_bytes()).unwrap();
        let mut s = s.with_max_nodes(2);
        let Some(Child::Skipped(t, reason)) = s.next_item().unwrap() else {
            panic!("not skipped")
        };
        assert_eq!((t.name.as_str(), t.attr("id")), ("t", Some("1")));
        assert!(t.children.is_empty());
        assert_eq!(reason, "more than 2 elements");
        assert_eq!(s.next_child().unwrap().unwrap().attr("n"), Some("2"));
        assert_eq!(s.next_child().unwrap().unwrap().children[0].name, "k");
        assert_eq!(s.next_child().unwrap(), None);
        // Too deep: skipped likewise, and the stream goes on.
        let deep = format!(
            "<r>{}<i/></r>",
            "<a>".repeat(40) + "text" + &"</a>".repeat(40)
        );
        let (mut s, _) = XmlStream::open(deep.as_bytes()).unwrap();
        let Some(Child::Skipped(a, reason)) = s.next_item().unwrap() else {
            panic!("not skipped")
        };
        assert_eq!(
            (a.name.as_str(), reason.as_str()),
            ("a", "nested deeper than 32")
        );
        assert_eq!(s.next_child().unwrap().unwrap().name, "i");
        assert_eq!(s.next_child().unwrap(), None);
    }
}
